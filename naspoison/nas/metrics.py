"""Training-free metrics: scores of a network at initialisation, by name.

Each metric is registered with its declared properties: whether it needs labels, the BN mode it
runs in, and its ``sign`` (+1: higher predicts a better network, −1: lower does). A metric takes
``(model, x, y)`` where ``model(x)`` returns logits, and returns a float; it never changes the
model's weights (synflow works on a copy). ``compute_metrics`` runs several at once and shares
passes: grad_norm, snip and fisher come from one forward and one backward.

Definitions (written from the papers; layer set = every Conv2d and Linear weight):
* ``ntk_cond`` (TE-NAS, Chen et al. 2021): κ = λ_max/λ_min of the N×N Gram Θ = J Jᵀ, J[i] the
  gradient of sample i's summed logits w.r.t. every parameter named ``weight`` (conv, linear
  and BN scales), one forward of the whole batch with BN in train mode. Eigenvalues in float64.
  **Rule**: κ is capped at ``KAPPA_MAX`` = 1e12: λ_min ≤ λ_max/1e12 (including λ_min ≤ 0 from
  round-off of a singular Θ) and a non-finite or all-zero Θ give ``KAPPA_MAX`` — never a
  negative, infinite or NaN score. Lower is better.
* ``linear_regions`` (TE-NAS): the number of distinct ReLU activation sign patterns (every ReLU
  output > 0, concatenated) over the inputs, in train mode, inputs processed in chunks (BN uses
  each chunk's statistics, as the reference's batches of 1000 do).
* ``grad_norm``: Σ over layers of ‖∂L/∂W‖₂, L the cross-entropy of the batch.
* ``snip`` (Lee et al. 2019): Σ |W ⊙ ∂L/∂W|.
* ``fisher`` (Turner et al. 2020; Abdelfattah et al. 2021): for every conv/linear output
  activation a with gradient g, Σ over channels of ½·mean over samples of (Σ_spatial a·g)².
* ``grasp`` (Wang et al. 2020): Σ −W ⊙ (H g), g = ∂L/∂W, H the Hessian of L, via a
  Hessian-vector product.
* ``synflow`` (Tanaka et al. 2020): on a float64 copy with every parameter and buffer replaced by
  its absolute value and BN bypassed, R = Σ model(1); Σ |W ⊙ ∂R/∂W|. No data, no labels.
* ``synflow_bn``: RoBoT's synflow as its reference computes it (foresight ``synflow`` on the DARTS
  network, ztcoalson/RoBoT ``search.py``: ``compute_synflow_per_weight``): the same, but BN kept, in
  train mode, on the batch of one input of ones (batch statistics over the spatial positions).
  Not the same ranking as ``synflow`` (issue 18: Spearman ≈ −0.2 over a pool).
* ``fisher_fanin``: RoBoT's fisher as its reference computes it (foresight ``fisher``, mode
  "channel"): each channel's value is broadcast to every weight of that channel before summing, so
  it counts fan-in times (in_channels/groups·k·k for a conv, in_features for a linear layer).
* ``jacob_cov`` (Mellor et al. 2021): J the per-sample input gradients of the summed logits; C
  their correlation matrix (float64); −Σ_i [log(λ_i + 1e-5) + 1/(λ_i + 1e-5)] over C's
  eigenvalues. NaN if a row of J is constant (no correlation defined).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
F = lazy("torch.nn.functional", globals(), "F")
nn = lazy("torch.nn", globals())

KAPPA_MAX = 1e12


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], float]
    needs_labels: bool
    bn_mode: str  # "train" | "none" (BN bypassed)
    sign: int     # +1: higher is better; −1: lower is better


METRICS: dict[str, Metric] = {}


def register(name: str, needs_labels: bool, bn_mode: str = "train", sign: int = 1):
    def wrap(fn):
        METRICS[name] = Metric(name, fn, needs_labels, bn_mode, sign)
        return fn
    return wrap


# ----------------------------------------------------------------------------- helpers
@contextmanager
def train_mode(model: nn.Module):
    """BN in train mode for the duration (batch statistics), restoring the caller's mode."""
    was = model.training
    if not was:  # model.train() walks every submodule: skip it when already training (TE-NAS calls this per candidate)
        model.train()
    try:
        yield model
    finally:
        if not was:
            model.eval()


def layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def named_weights(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter whose name ends in ``weight`` (TE-NAS's NTK parameter set)."""
    return [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "weight" and p.requires_grad]


def kappa(gram: torch.Tensor) -> float:
    """Condition number of a PSD matrix by the module's rule (float64; capped at KAPPA_MAX)."""
    g = gram.detach().double().cpu()
    if not bool(torch.isfinite(g).all()):
        return KAPPA_MAX
    ev = torch.linalg.eigvalsh((g + g.T) / 2)
    lo, hi = float(ev[0]), float(ev[-1])
    if hi <= 0 or lo <= hi / KAPPA_MAX:
        return KAPPA_MAX
    return hi / lo


# ----------------------------------------------------------------------------- NTK
def ntk_jacobian(model: nn.Module, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """[N, P]: per-sample gradients of the summed logits, from one forward of the whole batch (BN in
    train mode couples the samples, so sample i's gradient is taken through the batch's statistics)
    and one backward per sample over the retained graph, gradients taken only w.r.t. ``params``.
    (A vmapped backward — ``is_grads_batched`` or ``torch.func`` — falls back to a per-sample loop
    for these ops on CPU and measured no faster while this was written, so the loop stays.)"""
    params = list(params if params is not None else named_weights(model))
    with train_mode(model):
        out = model(x).sum(1)
    rows = []
    for i in range(len(out)):
        grads = torch.autograd.grad(out[i], params, retain_graph=i < len(out) - 1, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]))
    return torch.stack(rows)


@contextmanager
def thin_network_kernels(device: torch.device | str):
    """On CPU, oneDNN makes the NTK of a 1-channel proxy network about 2x slower than the plain
    kernels (benchmarks/ntk_kappa.py, "one network"); switch it off for the duration. Not for large
    forward-only batches, where oneDNN is faster."""
    if torch.device(device).type != "cpu":
        yield
        return
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was


def ntk_gram(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    j = ntk_jacobian(model, x).double()
    return j @ j.T


@register("ntk_cond", needs_labels=False, sign=-1)
def ntk_cond(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    return kappa(ntk_gram(model, x))


# ----------------------------------------------------------------------------- linear regions
@no_grad
def activation_patterns(model: nn.Module, x: torch.Tensor, chunk: int = 1000) -> np.ndarray:
    """[N, F] booleans: the sign (output > 0) of every ReLU unit for every input."""
    rows: list[torch.Tensor] = []

    def hook(module, inputs, output):
        if output.dim() == 4:  # as the reference: convolutional feature maps only
            feats.append((output > 0).flatten(1))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with train_mode(model):
            for i in range(0, len(x), chunk):
                feats: list[torch.Tensor] = []
                model(x[i:i + chunk])
                rows.append(torch.cat(feats, 1).cpu() if feats else torch.zeros(len(x[i:i + chunk]), 0, dtype=torch.bool))
    finally:
        for h in handles:
            h.remove()
    return torch.cat(rows, 0).numpy()


def count_distinct_rows(patterns: np.ndarray) -> int:
    if patterns.shape[1] == 0:
        return 1 if len(patterns) else 0
    packed = np.packbits(patterns, axis=1)  # 8 units per byte: exact, and rows compare as bytes
    return len(np.unique(packed, axis=0))


@register("linear_regions", needs_labels=False, sign=1)
def linear_regions(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, chunk: int = 1000) -> float:
    return float(count_distinct_rows(activation_patterns(model, x, chunk)))


# ----------------------------------------------------------------------------- loss-gradient metrics
def loss_gradient_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """grad_norm, snip and fisher from one forward and one backward of the cross-entropy."""
    acts: list[torch.Tensor] = []

    def keep(module, inputs, output):
        acts.append(output)

    mods = layers(model)
    handles = [m.register_forward_hook(keep) for m in mods]
    weights = [m.weight for m in mods]
    try:
        with train_mode(model):
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, weights + acts, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    wg, ag = grads[:len(weights)], grads[len(weights):]
    grad_norm = sum(float(g.norm()) for g in wg if g is not None)
    snip = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, wg) if g is not None)
    fisher = fisher_fanin = 0.0
    for m, a, g in zip(mods, acts, ag):
        if g is None:
            continue
        prod = a.detach() * g
        per_channel = prod.sum((2, 3)) if prod.dim() == 4 else prod
        channel = 0.5 * per_channel.pow(2).mean(0)
        fisher += float(channel.sum())
        fisher_fanin += float(channel.sum()) * (m.weight[0].numel())  # the reference's broadcast: fan-in per channel
    return {"grad_norm": grad_norm, "snip": snip, "fisher": fisher, "fisher_fanin": fisher_fanin}


@register("grad_norm", needs_labels=True)
def grad_norm(model, x, y):
    return loss_gradient_metrics(model, x, y)["grad_norm"]


@register("snip", needs_labels=True)
def snip(model, x, y):
    return loss_gradient_metrics(model, x, y)["snip"]


@register("fisher", needs_labels=True)
def fisher(model, x, y):
    return loss_gradient_metrics(model, x, y)["fisher"]


@register("fisher_fanin", needs_labels=True)
def fisher_fanin(model, x, y):
    return loss_gradient_metrics(model, x, y)["fisher_fanin"]


@register("grasp", needs_labels=True)
def grasp(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = [m.weight for m in layers(model)]
    with train_mode(model):
        g = [t.detach() for t in torch.autograd.grad(F.cross_entropy(model(x), y), weights)]
        g_graph = torch.autograd.grad(F.cross_entropy(model(x), y), weights, create_graph=True)
        z = sum((a * b).sum() for a, b in zip(g_graph, g))
        hg = torch.autograd.grad(z, weights)
    return float(sum((-w.detach() * h).sum() for w, h in zip(weights, hg)))


# ----------------------------------------------------------------------------- data-free / input-gradient
def _bypass_bn(model: nn.Module) -> None:
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _bypass_bn(child)


@register("synflow", needs_labels=False, bn_mode="none")
def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, keep_bn: bool = False) -> float:
    net = copy.deepcopy(model).double()
    if not keep_bn:
        _bypass_bn(net)
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.is_floating_point():
                t.abs_()
    weights = [m.weight for m in layers(net)]
    with train_mode(net):
        r = net(torch.ones(1, *x.shape[1:], dtype=torch.float64, device=x.device)).sum()
        grads = torch.autograd.grad(r, weights, allow_unused=True)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads) if g is not None))


@register("synflow_bn", needs_labels=False, bn_mode="train")
def synflow_bn(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    return synflow(model, x, y, keep_bn=True)


@register("jacob_cov", needs_labels=False)
def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    x = x.detach().clone().requires_grad_(True)
    with train_mode(model):
        (jac,) = torch.autograd.grad(model(x).sum(), x)
    corr = np.corrcoef(jac.reshape(len(x), -1).double().cpu().numpy())
    if not np.isfinite(corr).all():
        return float("nan")
    ev = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(ev + k) + 1.0 / (ev + k)))


# ----------------------------------------------------------------------------- several at once
SHARED_LOSS_PASS = ("grad_norm", "snip", "fisher", "fisher_fanin")


def compute_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, names: Iterable[str]) -> dict[str, float]:
    """Every named metric of ``model`` on the batch, sharing the loss-gradient pass."""
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    if y is None and any(METRICS[n].needs_labels for n in names):
        raise ValueError(f"metrics {[n for n in names if METRICS[n].needs_labels]} need labels")
    out: dict[str, float] = {}
    if any(n in SHARED_LOSS_PASS for n in names):
        shared = loss_gradient_metrics(model, x, y)
        out.update({n: shared[n] for n in names if n in SHARED_LOSS_PASS})
    for n in names:
        if n not in out:
            out[n] = float(METRICS[n].fn(model, x, y))
    return {n: out[n] for n in names}
