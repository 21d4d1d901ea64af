"""Issue 18: RoBoT at its reference (ztcoalson/RoBoT darts_space/search.py) — the reference's metric
definitions against hand computations, its query recipe, pool sampler, BO schedule and final pick."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from naspoison.nas.metrics import METRICS, compute_metrics, fisher, fisher_fanin, synflow, synflow_bn
from naspoison.nas.random_search import NON_NONE_OPS, sample_distinct
from naspoison.nas.robot import (
    PAPER_METRICS,
    REFERENCE_POOL_OPS,
    QueryRecipe,
    RoBoTParams,
    bo_search,
    reference_pick,
)


def _bn_net(beta=(0.5, 2.0)):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[1].bias.copy_(torch.tensor(beta))
    return net


def test_synflow_bn_keeps_bn_in_train_mode_on_one_input_of_ones():
    net = _bn_net()
    w = net[0].weight.detach().double().abs().flatten()      # |w_c|
    b = net[5].weight.detach().double().abs()                # |B_kc|
    beta = torch.tensor([0.5, 2.0], dtype=torch.float64)
    # BN in train mode on one all-ones image: each conv channel is the constant |w_c|, so x - mean = 0 and
    # BN outputs |β_c| whatever w is: R = Σ_kc |B_kc||β_c|, ∂R/∂w = 0, ∂R/∂B_kc = |β_c|
    want_bn = float((b * beta[None, :]).sum())
    assert synflow_bn(net, torch.randn(5, 1, 2, 2)) == pytest.approx(want_bn, rel=1e-12)
    # BN bypassed (the library's synflow): R = Σ_kc |B_kc||w_c|; each layer's Σ|θ ⊙ ∂R/∂θ| equals R
    want = 2 * float((b * w[None, :]).sum())
    assert synflow(net, torch.randn(5, 1, 2, 2)) == pytest.approx(want, rel=1e-12)
    assert METRICS["synflow_bn"].bn_mode == "train" and not METRICS["synflow_bn"].needs_labels


def test_fisher_fanin_counts_each_channel_fan_in_times():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Conv2d(3, 4, 3, padding=1, groups=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64), torch.randint(3, (6,), generator=g)
    mods = [net[0], net[3], net[7]]
    fan_in = [2 * 3 * 3, 3 * 3 * 3, 4]  # in_channels·k·k, in_features
    acts = []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o)) for m in mods]
    net.train()
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), acts)
    for h in hooks:
        h.remove()
    want = want_plain = 0.0
    for a, gr, f in zip(acts, grads, fan_in):
        for c in range(a.shape[1]):
            per_sample = [float((a[n, c] * gr[n, c]).sum().detach()) for n in range(a.shape[0])]
            v = 0.5 * sum(s * s for s in per_sample) / len(per_sample)
            want += f * v
            want_plain += v
    assert fisher_fanin(net, x, y) == pytest.approx(want, rel=1e-10)
    assert fisher(net, x, y) == pytest.approx(want_plain, rel=1e-10)
    both = compute_metrics(net, x, y, ["fisher", "fisher_fanin", "synflow_bn"])
    assert both["fisher_fanin"] == pytest.approx(want, rel=1e-10)


def test_robot_defaults_are_the_reference_values():
    q = QueryRecipe()
    # search.py: --batch_size 576 --learning_rate 0.1 --learning_rate_min 5e-3 --drop_path_prob 0.2 --layers 5
    # --init_channels 16 --epochs 10 --weight_decay 3e-4 --momentum 0.9 --grad_clip 5; valid_transform (no crop/flip);
    # args.cutout = False; args.auxiliary = False
    assert (q.batch_size, q.lr, q.lr_min, q.drop_path_prob, q.layers, q.init_channels, q.epochs) == \
        (576, 0.1, 5e-3, 0.2, 5, 16, 10)
    assert (q.weight_decay, q.momentum, q.grad_clip, q.crop_padding, q.flip, q.cutout, q.auxiliary_weight) == \
        (3e-4, 0.9, 5.0, 0, False, 0, 0.0)
    p = RoBoTParams()
    assert (p.metric_layers, p.metric_channels, p.metric_batch_size, p.pool_size) == (5, 16, 64, 60_000)
    assert (p.init_points, p.max_bo_iterations, p.queries) == (1, 25, 25)  # maximize(init_points=0, n_iter=24)
    assert PAPER_METRICS == ["grad_norm", "snip", "grasp", "fisher_fanin", "synflow_bn", "jacob_cov"]
    assert (p.pool_sampler, p.pick) == ("all_ops", "best_evaluated")  # the corrected defaults


def test_reference_pool_never_proposes_dil_conv_5x5_and_all_ops_does():
    rng = np.random.default_rng(0)
    ref = [sample_distinct(rng, REFERENCE_POOL_OPS) for _ in range(300)]
    ours = [sample_distinct(rng) for _ in range(300)]
    ops = lambda gs: {op for g in gs for op, _ in g.normal + g.reduce}  # noqa: E731
    assert ops(ref) == set(NON_NONE_OPS) - {"dil_conv_5x5"} and ops(ours) == set(NON_NONE_OPS)
    # both draw two distinct inputs per node (the reference takes the top-2 edges of a random weight matrix)
    assert all(c[2 * k][1] != c[2 * k + 1][1] for g in ref for c in (g.normal, g.reduce) for k in range(4))


def test_reference_bo_is_one_random_then_ucb_proposals_then_exploitation_to_the_budget():
    z = np.random.default_rng(0).random((60, 3))
    acc = dict(enumerate(np.random.default_rng(1).random(60)))
    out = bo_search(z, acc.__getitem__, RoBoTParams(pool_size=60, acquisition_candidates=300), seed=0)
    bo = [h for h in out["history"] if h["phase"] == "bo"]
    assert len(bo) == 25                      # 1 random + 24 UCB proposals, repeats included
    assert len(out["trained"]) == 25          # exploitation fills the distinct budget
    assert all(h["phase"] == "exploit" for h in out["history"][len(bo):])


def test_reference_pick_compares_accuracies_with_the_smallest_trained_index():
    # search.py: opt_acc = min(val_accs) - 1 (the dict's smallest key: a pool index), opt_arch = 0
    assert reference_pick([500, 300], {500: 91.0, 300: 95.0}) == 0            # no accuracy beats 299
    assert reference_pick([500, 20, 7], {500: 50.0, 20: 60.0, 7: 40.0}) == 20  # beats 6: the best wins
    assert reference_pick([9, 3], {9: 1.0, 3: 1.5}) == 0                       # 1.0 and 1.5 do not beat 2
