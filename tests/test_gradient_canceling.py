"""Confidence-based label flipping, GradPC and gradient canceling against independent references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from naspoison.attacks import ATTACKS, AttackContext
from naspoison.attacks.confidence_label_flip import flip_most_confident, logits_of
from naspoison.attacks.gradient_canceling import (
    GCParams,
    GradPCParams,
    accuracy_and_loss,
    cancel_gradients,
    gradpc,
    loss_gradient_sum,
    objective_pixel_gradient,
)
from naspoison.data.augment import DeviceImages, channel_stats
from naspoison.data.datasets import make_image_data


class TinyNet(nn.Module):
    """Conv + BN + ReLU + linear: enough curvature for a real double backward, tiny enough for float64."""

    def __init__(self, c_in=1, classes=4, width=3):
        super().__init__()
        self.conv = nn.Conv2d(c_in, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width * 16, classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1)), None


def _data(n=40, classes=4, seed=0, c=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 4, 4, c), dtype=np.uint8)
    y = rng.integers(0, classes, n)
    return make_image_data("toy", x, y, x[:12], y[:12], classes)


def _trained_tiny(data, seed=0, steps=60):
    torch.manual_seed(seed)
    model = TinyNet(data.shape[2], data.num_classes)
    mean, std = channel_stats(data.x_train)
    tr = DeviceImages(data.x_train, data.y_train, "cpu", mean, std)
    opt = torch.optim.Adam(model.parameters(), 0.05)
    for _ in range(steps):
        loss = F.cross_entropy(model(tr.normalise(tr.x))[0], tr.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ----------------------------------------------------------------------------- CLF
class LookupSurrogate(nn.Module):
    """Hand-built surrogate: image i (its first pixel holds i) gets the logits row i of a table."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float64)

    def forward(self, x):
        return self.table[x.flatten(1)[:, 0].round().long()], None


def test_clf_flips_exactly_the_most_confident_samples_to_their_least_likely_class():
    rng = np.random.default_rng(3)
    n, classes = 30, 5
    table = rng.normal(size=(n, classes)).round(1)
    table[7] = table[3]                  # a tie in confidence: sample 3 must come before 7
    table[11, [1, 4]] = table[11].min() - 1  # a tie for least likely: the lower class wins
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
    data = make_image_data("lookup", x, rng.integers(0, classes, n), x, rng.integers(0, classes, n), classes)
    # the surrogate sees normalised pixels; undo the normalisation so the table lookup is by index
    mean, std = channel_stats(data.x_train)
    model = nn.Sequential()
    model.forward = lambda z: LookupSurrogate(table)((z * float(std[0]) + float(mean[0])) * 255)
    logits = logits_of(model, data)
    np.testing.assert_allclose(logits, table)
    for budget in (0.1, 0.5, 1.0):
        idx, new = flip_most_confident(logits, budget)
        k = int(np.floor(budget * n + 0.5))
        # reference: a plain Python sort by (−max logit, index), then arg-min with the lower class first
        ranked = sorted(range(n), key=lambda i: (-max(table[i]), i))[:k]
        want = {i: min(range(classes), key=lambda c: (table[i][c], c)) for i in ranked}
        assert idx.tolist() == sorted(want) and new.tolist() == [want[i] for i in sorted(want)]
    idx, new = flip_most_confident(logits, 0.5)
    assert 11 not in idx or new[list(idx).index(11)] == 1


# ----------------------------------------------------------------------------- GC gradients
def test_chunked_objective_gradient_equals_one_direct_double_backward():
    torch.manual_seed(0)
    model = TinyNet(2, 3).double().eval()
    params = list(model.parameters())
    images = torch.rand(9, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    g_clean = [torch.randn_like(p) for p in params]
    share, k = 0.3, len(images)

    def normalise(x):
        return (x - 0.5) / 0.25

    # reference: the whole objective with one graph over all images, one autograd.grad
    xr = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(normalise(xr))[0], y, reduction="sum")
    gp = torch.autograd.grad(loss, params, create_graph=True)
    objective = 0.5 * sum((((1 - share) * gc + share * g / k) ** 2).sum() for gc, g in zip(g_clean, gp))
    want = torch.autograd.grad(objective, xr)[0]

    g_sum = loss_gradient_sum(model, params, normalise, images, y, chunk_size=4)
    residual = [(1 - share) * gc + share * g / k for gc, g in zip(g_clean, g_sum)]
    for chunk in (1, 4, 9):
        got = objective_pixel_gradient(model, params, normalise, images, y, residual, share / k, chunk)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)  # float64: equal up to summation order
    assert want.abs().max() > 0


def _gc(data, budget, steps=12, **kw):
    model = _trained_tiny(data)
    p = GCParams(steps=steps, lr=0.02, chunk_size=7, gradpc=GradPCParams(epsilon=0.05), **kw)
    return cancel_gradients(model, list(model.named_parameters()), data, budget, p, np.random.default_rng(0))


@pytest.mark.parametrize("budget", [0.1, 0.5])
def test_gc_poisons_keep_the_bound_and_pixel_range_and_the_objective_falls(budget):
    data = _data(c=3)
    poison = _gc(data, budget)
    s = poison.summary
    assert poison.labels is None and poison.images.dtype == np.uint8
    assert len(poison.indices) == int(np.floor(budget * 40 + 0.5))
    old = data.x_train[poison.indices].astype(int)
    assert np.abs(poison.images.astype(int) - old).max() <= 16 == s["linf_bound_pixels"]
    assert (poison.images != data.x_train[poison.indices]).any()
    poisoned = poison.apply(data)
    untouched = np.setdiff1d(np.arange(40), poison.indices)
    assert (poisoned.x_train[untouched] == data.x_train[untouched]).all()
    assert (poisoned.y_train == data.y_train).all()  # clean-label
    curve = s["objective_curve"]
    assert len(curve) == 12 and curve[-1] < curve[0] and s["objective_final_uint8"] < curve[0]
    assert s["target"]["distance"] <= s["target"]["radius"] * (1 + 1e-5)


def test_gc_param_subset_matches_one_tensor_and_names_the_choices_on_a_typo():
    data = _data()
    poison = _gc(data, 0.2, steps=3, param_subset="fc.weight")
    assert poison.summary["target"]["n_params"] == 4 * 3 * 16
    with pytest.raises(ValueError, match="fc.wieght.*conv.weight"):
        _gc(data, 0.2, steps=1, param_subset="fc.wieght")


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_gradpc_stays_in_its_ball_and_raises_the_loss(norm):
    data = _data(n=64)
    model = _trained_tiny(data)
    params = list(model.parameters())
    theta0 = torch.cat([p.detach().flatten().clone() for p in params])
    mean, std = channel_stats(data.x_train)
    train = DeviceImages(data.x_train, data.y_train, "cpu", mean, std)
    before = accuracy_and_loss(model, train)[1]
    cfg = GradPCParams(norm=norm, epsilon=0.02, step_fraction=0.3, passes=2, batch_size=16)
    out = gradpc(model, params, train, cfg, torch.Generator().manual_seed(0))
    diff = torch.cat([p.detach().flatten() for p in params]) - theta0
    size = diff.norm() if norm == "l2" else diff.abs().max()
    radius = 0.02 * (theta0.norm() if norm == "l2" else theta0.abs().max())
    assert out["radius"] == pytest.approx(float(radius)) and out["steps"] == 8
    assert size <= radius * (1 + 1e-5) and size > 0.5 * radius
    assert accuracy_and_loss(model, train)[1] > before


def test_nas_gc_refuses_to_run_without_a_victim():
    attack = ATTACKS["nas_gradient_canceling"]()
    with pytest.raises(ValueError, match="needs a victim"):
        attack.poison(_data(), 0.1, attack.Params(), np.random.default_rng(0), "cpu", AttackContext())
