"""Training-free metrics against slow, obviously-correct references written here."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from naspoison.nas.metrics import (
    KAPPA_MAX,
    METRICS,
    compute_metrics,
    count_distinct_rows,
    fisher,
    grad_norm,
    grasp,
    jacob_cov,
    kappa,
    linear_regions,
    ntk_cond,
    ntk_gram,
    snip,
    synflow,
)
from naspoison.spaces.darts import EDGES, OP_NAMES
from naspoison.spaces.darts_supernet import SuperNetwork


def small_cnn(classes=3):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes),
    ).double()


def batch(n=6, classes=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, 5, 5, generator=g, dtype=torch.float64), torch.randint(classes, (n,), generator=g)


def proxy_supernet():
    torch.manual_seed(0)
    ops = [list(OP_NAMES[1:]) for _ in EDGES]
    return SuperNetwork(ops, ops, 1, 2, 4, in_channels=2, stem_multiplier=1, affine=True, pool_bn=False,
                        head_act=True, reductions=(1,)).double()


def weight_params(model):
    return [p for n, p in model.named_parameters() if n.endswith("weight")]


# ----------------------------------------------------------------------------- NTK
@pytest.mark.parametrize("make", [small_cnn, proxy_supernet])
def test_ntk_gram_equals_a_per_sample_backward_loop(make):
    model = make()
    x, _ = batch()
    # the reference's procedure: one forward in train mode, .backward() of each sample's summed
    # logits into .grad, read every `weight`, zero, repeat
    model.train()
    out = model(x)
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        out[i:i + 1].backward(torch.ones_like(out[i:i + 1]), retain_graph=True)
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                               for p in weight_params(model)]))
    j = torch.stack(rows)
    ref = j @ j.T
    fast = ntk_gram(model, x)
    assert torch.allclose(fast, ref, rtol=1e-10, atol=1e-12)
    ev = np.linalg.eigvalsh(ref.numpy())
    assert ntk_cond(model, x) == pytest.approx(ev[-1] / ev[0], rel=1e-8)


def test_kappa_rule_is_finite_positive_and_capped():
    assert kappa(torch.diag(torch.tensor([1.0, 4.0]))) == pytest.approx(4.0)
    assert kappa(torch.zeros(3, 3)) == KAPPA_MAX                       # no signal at all
    assert kappa(torch.ones(3, 3)) == KAPPA_MAX                        # rank 1: λ_min = 0 (or round-off)
    assert kappa(torch.diag(torch.tensor([1.0, -1e-9]))) == KAPPA_MAX  # negative round-off
    assert kappa(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])) == KAPPA_MAX
    assert kappa(torch.diag(torch.tensor([1.0, 1e-13]))) == KAPPA_MAX  # beyond the cap


def test_bn_centred_outputs_make_the_ntk_singular_which_the_proxy_head_avoids():
    # every DARTS edge output ends in BN, so in train mode the batch's summed logits do not depend on
    # the weights: Θ·1 = 0. The TE-NAS proxy's BN+ReLU head breaks this; without it κ hits the cap.
    x, _ = batch()
    ops = [list(OP_NAMES[1:]) for _ in EDGES]
    torch.manual_seed(0)
    plain = SuperNetwork(ops, ops, 1, 2, 4, in_channels=2, stem_multiplier=1, affine=True, reductions=(1,)).double()
    gram = ntk_gram(plain, x)
    assert float(gram.sum()) == pytest.approx(0.0, abs=1e-9 * float(gram.abs().max()))
    assert kappa(gram) == KAPPA_MAX
    assert ntk_cond(proxy_supernet(), x) < 1e6


# ----------------------------------------------------------------------------- linear regions
def test_linear_regions_counts_sign_patterns_on_a_hand_example():
    relu = nn.Sequential(nn.ReLU())  # regions of the identity's ReLU = the sign orthants hit
    x = torch.tensor([[1, 1], [1, -1], [-1, 1], [-1, -1], [2, 3], [5, -2]], dtype=torch.float32).view(6, 1, 1, 2)
    assert linear_regions(relu, x) == 4


def test_linear_regions_equals_a_python_set_of_sign_tuples():
    model = proxy_supernet().float()
    x = torch.randn(300, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    feats = []
    hooks = [m.register_forward_hook(lambda m, i, o: feats.append(o)) for m in model.modules() if isinstance(m, nn.ReLU)]
    model.train()
    patterns = set()
    with torch.no_grad():
        for start in range(0, 300, 100):  # BN statistics per chunk, as the metric's chunks
            feats.clear()
            model(x[start:start + 100])
            for i in range(100):
                patterns.add(tuple(int(v > 0) for f in feats if f.dim() == 4 for v in f[i].reshape(-1).tolist()))
    for h in hooks:
        h.remove()
    assert linear_regions(model, x, chunk=100) == len(patterns)
    assert 1 < len(patterns) <= 300


def test_count_distinct_rows_is_exact_across_byte_boundaries():
    rows = np.zeros((4, 9), dtype=bool)
    rows[1, 8] = True   # differs only in the 9th bit (second byte)
    rows[2, 0] = True
    rows[3, 8] = True   # equals row 1
    assert count_distinct_rows(rows) == 3


# ----------------------------------------------------------------------------- loss-gradient metrics
def layer_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_grad_norm_and_snip_match_a_plain_backward():
    model, (x, y) = small_cnn(), batch()
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    ws = layer_weights(model)
    assert grad_norm(model, x, y) == pytest.approx(sum(math.sqrt(float((w.grad ** 2).sum())) for w in ws), rel=1e-10)
    assert snip(model, x, y) == pytest.approx(sum(float((w * w.grad).abs().sum().detach()) for w in ws), rel=1e-10)


def test_fisher_matches_an_explicit_per_channel_per_sample_sum():
    model, (x, y) = small_cnn(), batch()
    model.train()
    acts = []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o)) for m in layer_weights_modules(model)]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, acts)
    for h in hooks:
        h.remove()
    total = 0.0
    for a, g in zip(acts, grads):
        for c in range(a.shape[1]):
            per_sample = [float((a[n, c] * g[n, c]).sum().detach()) for n in range(a.shape[0])]
            total += 0.5 * sum(v * v for v in per_sample) / len(per_sample)
    assert fisher(model, x, y) == pytest.approx(total, rel=1e-10)


def layer_weights_modules(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_grasp_matches_an_explicit_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.Tanh(), nn.Linear(3, 2, bias=False)).double()
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    w1, w2 = model[1].weight, model[3].weight
    theta = torch.cat([w1.reshape(-1), w2.reshape(-1)]).detach()

    def loss_of(flat):
        a, b = flat[:12].view(3, 4), flat[12:].view(2, 3)
        return F.cross_entropy(torch.tanh(x.flatten(1) @ a.T) @ b.T, y)

    g = torch.autograd.functional.jacobian(loss_of, theta)
    h = torch.autograd.functional.hessian(loss_of, theta)
    assert grasp(model, x, y) == pytest.approx(float(-(theta * (h @ g)).sum()), rel=1e-8)


def test_synflow_matches_the_product_of_absolute_weights_and_bypasses_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.ReLU(),
                          nn.Linear(3, 2, bias=False))
    a, b = model[1].weight.detach().double().abs(), model[4].weight.detach().double().abs()
    # R = 1ᵀ|B||A|1 (ReLU is the identity on positive inputs, BN is bypassed)
    # ∂R/∂A_ij = (1ᵀ|B|)_i, ∂R/∂B_ki = (|A|1)_i
    col = b.sum(0)
    row = a.sum(1)
    expected = float((a * col[:, None]).sum() + (b * row[None, :]).sum())
    before = [p.detach().clone() for p in model.parameters()]
    assert synflow(model, torch.randn(7, 1, 2, 2), None) == pytest.approx(expected, rel=1e-12)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # the model is untouched


def test_jacob_cov_matches_a_per_output_input_gradient_loop():
    model, (x, _) = small_cnn(), batch()
    model.train()
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    jac = torch.zeros_like(x)
    for i in range(out.shape[0]):
        for c in range(out.shape[1]):
            jac += torch.autograd.grad(out[i, c], xr, retain_graph=True)[0]
    corr = np.corrcoef(jac.reshape(len(x), -1).numpy())
    ev = np.linalg.eigvalsh(corr)
    expected = -float(np.sum(np.log(ev + 1e-5) + 1 / (ev + 1e-5)))
    assert jacob_cov(model, x, None) == pytest.approx(expected, rel=1e-8)


def test_compute_metrics_shares_the_loss_pass_and_equals_each_metric_alone():
    model, (x, y) = small_cnn(), batch()
    names = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "ntk_cond"]
    together = compute_metrics(model, x, y, names)
    for n in names:
        assert together[n] == pytest.approx(METRICS[n].fn(model, x, y), rel=1e-10), n
    with pytest.raises(ValueError, match="need labels"):
        compute_metrics(model, x, None, ["snip"])
    with pytest.raises(KeyError, match="unknown metric"):
        compute_metrics(model, x, y, ["snipp"])


def test_metrics_declare_their_properties():
    assert {n for n, m in METRICS.items() if m.needs_labels} == {"grad_norm", "snip", "grasp", "fisher", "fisher_fanin"}
    assert METRICS["ntk_cond"].sign == -1 and METRICS["linear_regions"].sign == 1
    assert METRICS["synflow"].bn_mode == "none"
