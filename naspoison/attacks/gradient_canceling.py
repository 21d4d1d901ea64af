"""Gradient canceling (Lu et al. 2023; the poisoning paper's Algorithm 2) and its GradPC target.

**GradPC** (Sun et al. 2020) makes the target parameters θ*: normalised gradient *ascent* on the
training loss (one data pass by default), each step projected back into an ε-ball around the clean
parameters θ₀, so θ* stays close to θ₀ but predicts worse. The ball's radius is ε, or ε·‖θ₀‖ with
``relative`` (one setting then fits weights and architecture parameters alike).

**Gradient canceling** replaces p·n images by perturbed copies (labels kept) and optimises the
perturbations Δ with Adam for S steps to minimise

    ½‖(1−p)·g_clean + p·g_poison(Δ)‖²,   g = mean cross-entropy gradient at θ* over the chosen parameters,

with the model in eval mode and no augmentation; g_clean is computed once, over the samples that are
not replaced. After every step Δ is projected to ‖Δ‖∞ ≤ ε and the pixel range; the final images are
rounded in integer pixel space, clipped to the bound there, so uint8 rounding cannot break it.

Memory stays bounded at any budget: the gradient of the objective w.r.t. the images is
Jᵀr with r the residual (1−p)·g_clean + p·g_poison, so g_poison is first accumulated chunk by chunk
without a graph, then for each chunk the scalar (p/k)·⟨r, Σ_chunk ∇θ L_i⟩ is back-propagated to that
chunk's pixels (double backward). No per-sample gradients, one chunk's graph alive at a time.

The official GC code matches the gradient of a single parameter tensor with plain gradient descent
and no bound; here every parameter is matched by default, and ``param_subset`` names one tensor to
reproduce that variant.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from naspoison.attacks.base import Attack, AttackContext, Poison, choose_indices
from naspoison.attacks.surrogate import SurrogateRecipe, surrogate_model
from naspoison.data.augment import DeviceImages, channel_stats
from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison.run import checkpoint
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
F = lazy("torch.nn.functional", globals(), "F")
nn = lazy("torch.nn", globals())

if TYPE_CHECKING:  # an alias for annotations only: torch loads at first use
    Normalise = Callable[[torch.Tensor], torch.Tensor]  # [0,1] float images -> model input


class GradPCParams(StrictParams):
    norm: Literal["l2", "linf"] = "l2"
    epsilon: float = Field(0.005, gt=0, description="ball radius (times ‖θ₀‖ in the same norm when relative)")
    relative: bool = True
    step_fraction: float = Field(0.1, gt=0, le=1, description="step length as a fraction of the radius")
    passes: float = Field(1.0, gt=0, description="passes over the clean training set")
    batch_size: int = Field(128, gt=0)


class GCParams(StrictParams):
    steps: int = Field(250, gt=0)
    lr: float = Field(0.01, gt=0, description="Adam step on the [0,1] pixel scale")
    epsilon: float = Field(16 / 255, gt=0, le=1, description="l_inf bound on the [0,1] pixel scale")
    chunk_size: int = Field(250, gt=0, description="images per double-backward chunk (memory, not results)")
    param_subset: str | None = Field(None, description="match one named parameter tensor only (official-code variant)")
    gradpc: GradPCParams = Field(default_factory=GradPCParams)


class GradientCancelingParams(GCParams):
    surrogate: SurrogateRecipe = Field(default_factory=SurrogateRecipe)


# ----------------------------------------------------------------------------- gradients
def select_params(named: Sequence[tuple[str, nn.Parameter]], subset: str | None) -> list[nn.Parameter]:
    if subset is None:
        return [p for _, p in named]
    found = [p for name, p in named if name == subset]
    if not found:
        raise ValueError(f"param_subset {subset!r} is not a parameter of the target; "
                         f"it has {[name for name, _ in named][:12]}{'…' if len(named) > 12 else ''}")
    return found


def loss_gradient_sum(model: nn.Module, params: list[torch.Tensor], normalise: Normalise, x: torch.Tensor,
                      y: torch.Tensor, chunk_size: int) -> list[torch.Tensor]:
    """Σ_i ∇θ CE(model(normalise(x_i)), y_i), chunk by chunk (normalised per chunk), no graph kept."""
    total = [torch.zeros_like(p) for p in params]
    for i in range(0, len(x), chunk_size):
        loss = F.cross_entropy(model(normalise(x[i:i + chunk_size]))[0], y[i:i + chunk_size], reduction="sum")
        for t, g in zip(total, torch.autograd.grad(loss, params)):
            t += g
    return total


def objective_pixel_gradient(model: nn.Module, params: list[torch.Tensor], normalise: Normalise,
                             images: torch.Tensor, y: torch.Tensor, residual: list[torch.Tensor],
                             weight: float, chunk_size: int) -> torch.Tensor:
    """d/d images of ½‖residual‖² where residual = const + weight·Σ_i ∇θ L_i(images): chunk by chunk,
    the scalar weight·⟨residual, Σ_chunk ∇θ L_i⟩ back-propagated to the chunk's pixels."""
    grad = torch.zeros_like(images)
    for i in range(0, len(images), chunk_size):
        xc = images[i:i + chunk_size].detach().requires_grad_(True)
        loss = F.cross_entropy(model(normalise(xc))[0], y[i:i + chunk_size], reduction="sum")
        gs = torch.autograd.grad(loss, params, create_graph=True)
        inner = sum((g * r).sum() for g, r in zip(gs, residual))
        grad[i:i + chunk_size] = torch.autograd.grad(weight * inner, xc)[0]
    return grad


def _norm(flat: torch.Tensor, kind: str) -> float:
    return float(flat.norm(p=2) if kind == "l2" else flat.abs().max())


# ----------------------------------------------------------------------------- GradPC
def gradpc(model: nn.Module, params: list[torch.Tensor], train: DeviceImages, p: GradPCParams,
           gen: torch.Generator, log: Callable[[str], None] = lambda m: None) -> dict:
    """Move ``params`` in place to the GradPC target; returns the radius, distance and step count."""
    model.eval()
    theta0 = [t.detach().clone() for t in params]
    theta0_norm = _norm(torch.cat([t.flatten() for t in theta0]), p.norm)
    radius = p.epsilon * theta0_norm if p.relative else p.epsilon
    step = p.step_fraction * radius
    n = len(train)
    steps = max(1, math.ceil(p.passes * n / p.batch_size))
    perm = torch.empty(0, dtype=torch.long, device=train.x.device)
    for s in range(steps):
        if len(perm) < p.batch_size:
            perm = torch.cat([perm, torch.randperm(n, generator=gen, device=train.x.device)])
        idx, perm = perm[:p.batch_size], perm[p.batch_size:]
        loss = F.cross_entropy(model(train.normalise(train.x[idx]))[0], train.y[idx])
        grads = torch.autograd.grad(loss, params)
        flat = torch.cat([g.flatten() for g in grads])
        with torch.no_grad():
            if p.norm == "l2":
                size = flat.norm()
                if size == 0 or not torch.isfinite(size):
                    continue
                direction = [g / size for g in grads]
            else:
                direction = [g.sign() for g in grads]
            for t, d, t0 in zip(params, direction, theta0):
                t += step * d  # ascent: increase the loss
            diff = torch.cat([(t - t0).flatten() for t, t0 in zip(params, theta0)])
            if p.norm == "l2":
                size = diff.norm()
                if size > radius:
                    for t, t0 in zip(params, theta0):
                        t.copy_(t0 + (t - t0) * (radius / size))
            else:
                for t, t0 in zip(params, theta0):
                    t.copy_(t0 + (t - t0).clamp(-radius, radius))
        if (s + 1) % max(1, steps // 5) == 0:
            log(f"GradPC step {s + 1}/{steps}: batch loss {loss.item():.3f}")
    distance = _norm(torch.cat([(t.detach() - t0).flatten() for t, t0 in zip(params, theta0)]), p.norm)
    return {"norm": p.norm, "radius": radius, "distance": distance, "steps": steps, "theta0_norm": theta0_norm}


@no_grad
def accuracy_and_loss(model: nn.Module, data: DeviceImages, batch_size: int = 500,
                      predictions: list | None = None) -> tuple[float, float]:
    """Test accuracy and mean loss; ``predictions``, if given, receives the arg-max of every sample."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(data), batch_size):
        logits = model(data.normalise(data.x[i:i + batch_size]))[0]
        correct += int((logits.argmax(1) == data.y[i:i + batch_size]).sum())
        loss += float(F.cross_entropy(logits, data.y[i:i + batch_size], reduction="sum"))
        if predictions is not None:
            predictions.append(logits.argmax(1).cpu())
    return correct / len(data), loss / len(data)


# A target that flips no test prediction and moves the test loss by less than this (relative) is
# refused: poisons crafted toward it would cancel gradients of the clean model itself (the relative
# radius 0.005·‖α‖ on P-DARTS's ~0.02-norm alphas gave such a target: 1.5e-5 relative loss change).
MIN_TARGET_LOSS_CHANGE = 1e-3


def check_target_effect(names: Sequence[str], params: Sequence[torch.Tensor], theta0: Sequence[torch.Tensor],
                        changed_predictions: int, loss0: float, loss1: float, radius: float) -> None:
    """Raise if the GradPC target is numerically the clean model (see ``MIN_TARGET_LOSS_CHANGE``),
    naming each target parameter with how far it moved."""
    rel_loss = abs(loss1 - loss0) / max(abs(loss0), 1e-12)
    identical = all(torch.equal(t.detach(), t0) for t, t0 in zip(params, theta0))
    if not identical and (changed_predictions > 0 or rel_loss >= MIN_TARGET_LOSS_CHANGE):
        return
    moved = ", ".join(f"{n} (‖Δ‖₂ {float((t.detach() - t0).norm()):.3g} of ‖θ₀‖₂ {float(t0.norm()):.3g})"
                      for n, t, t0 in zip(names, params, theta0))
    raise ValueError(
        f"GradPC target is numerically identical to the clean model: radius {radius:.3g} moved {moved}, "
        f"{changed_predictions} test predictions changed, test loss {loss0:.6g} -> {loss1:.6g} "
        f"(relative {rel_loss:.2g} < {MIN_TARGET_LOSS_CHANGE:g}); poisons toward it would target the clean model. "
        "Raise gradpc.epsilon, or set gradpc.relative: false for parameters with a small norm "
        "(P-DARTS's alphas: the authors used an absolute epsilon of 1.0)")


# ----------------------------------------------------------------------------- gradient canceling
def cancel_gradients(model: nn.Module, named_params: Sequence[tuple[str, nn.Parameter]], data: ImageData,
                     budget: float, p: GCParams, rng: np.random.Generator, device="cpu",
                     log: Callable[[str], None] = lambda m: None) -> Poison:
    """GradPC on ``named_params`` of ``model`` (moved in place to the target), then Algorithm 2 on
    p·n randomly chosen training images. Returns the poison with a summary of both."""
    params = select_params(named_params, p.param_subset)
    names = [n for n, q in named_params if any(q is t for t in params)]
    flags = [(q, q.requires_grad) for q in model.parameters()]
    for q, _ in flags:  # gradients w.r.t. θ only; every flag is restored afterwards, even on an error
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    try:
        return _cancel(model, params, data, budget, p, rng, torch.device(device), log, names)
    finally:
        for q, flag in flags:
            q.requires_grad_(flag)


def _cancel(model: nn.Module, params: list[nn.Parameter], data: ImageData, budget: float, p: GCParams,
            rng: np.random.Generator, device: torch.device, log: Callable[[str], None],
            names: Sequence[str] = ()) -> Poison:
    model.eval()
    mean, std = channel_stats(data.x_train)
    train = DeviceImages(data.x_train, data.y_train, device, mean, std)
    test = DeviceImages(data.x_test, data.y_test, device, mean, std)
    normalise: Normalise = lambda x: (x - train.mean) / train.std  # [0,1] pixels -> model input

    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    pred0: list = []
    pred1: list = []
    acc0, loss0 = accuracy_and_loss(model, test, predictions=pred0)
    theta0 = [t.detach().clone() for t in params]
    target = gradpc(model, params, train, p.gradpc, gen, log)
    acc1, loss1 = accuracy_and_loss(model, test, predictions=pred1)
    changed = int((torch.cat(pred0) != torch.cat(pred1)).sum())
    log(f"GradPC target: test accuracy {acc0:.4f} -> {acc1:.4f}, loss {loss0:.3f} -> {loss1:.3f}, "
        f"{changed} predictions changed")
    check_target_effect(list(names) or [f"param{i}" for i in range(len(params))], params, theta0, changed,
                        loss0, loss1, target["radius"])

    n = len(data.y_train)
    idx = choose_indices(rng, budget, n)
    k = len(idx)
    share = k / n  # the realised p
    clean_mask = np.ones(n, dtype=bool)
    clean_mask[idx] = False
    clean_idx = torch.from_numpy(np.flatnonzero(clean_mask)).to(device)
    pidx = torch.from_numpy(idx).to(device)
    y = train.y[pidx]
    x0 = train.x[pidx].float() / 255.0
    g_clean = loss_gradient_sum(model, params, train.normalise, train.x[clean_idx], train.y[clean_idx], p.chunk_size)
    g_clean = [g / max(1, len(clean_idx)) for g in g_clean]

    def residual_at(images: torch.Tensor) -> tuple[list[torch.Tensor], float]:
        g_poison = loss_gradient_sum(model, params, normalise, images, y, p.chunk_size)
        r = [(1 - share) * gc + share * gp / k for gc, gp in zip(g_clean, g_poison)]
        return r, 0.5 * float(sum((t.double() ** 2).sum() for t in r))

    delta = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=p.lr)
    curve = []
    ck = checkpoint.loop("gc_steps", optimizers=[opt])
    state = ck.resume({"epoch": 0, "curve": curve, "delta": delta.detach()})
    curve = state["curve"]
    with torch.no_grad():
        delta.copy_(state["delta"])
    for s in range(state["epoch"], p.steps):
        images = x0 + delta.detach()
        r, obj = residual_at(images)
        curve.append(obj)
        if not math.isfinite(obj):
            raise FloatingPointError(f"gradient canceling: objective {obj} at step {s}")
        delta.grad = objective_pixel_gradient(model, params, normalise, images, y, r, share / k, p.chunk_size)
        opt.step()
        with torch.no_grad():
            delta.clamp_(-p.epsilon, p.epsilon)
            delta.copy_((x0 + delta).clamp_(0, 1) - x0)
        if s == 0 or (s + 1) % max(1, p.steps // 10) == 0:
            log(f"GC step {s + 1}/{p.steps}: objective {obj:.4g}")
        ck.save_if_due(lambda s=s: {"epoch": s + 1, "curve": curve, "delta": delta.detach()}, final=s + 1 == p.steps)

    # the bound in integer pixel space, so rounding to uint8 cannot exceed it
    bound = int(np.floor(p.epsilon * 255 + 1e-9))
    x0_int = train.x[pidx].to(torch.int16)
    new = torch.round((x0 + delta.detach()) * 255).to(torch.int16)
    new = torch.minimum(torch.maximum(new, x0_int - bound), x0_int + bound).clamp_(0, 255)
    _, final = residual_at(new.float() / 255.0)
    realised = (new - x0_int).abs()
    images_out = new.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # back to NHWC
    return Poison(idx, images=images_out, summary={
        "n_poisoned": k,
        "target": {**target, "test_acc_before": acc0, "test_acc_after": acc1,
                   "test_loss_before": loss0, "test_loss_after": loss1,
                   "accuracy_drop": acc0 - acc1, "test_predictions_changed": changed,
                   "params": list(names), "n_params": int(sum(q.numel() for q in params)),
                   "param_subset": p.param_subset},
        "objective_initial": curve[0], "objective_last_step": curve[-1], "objective_final_uint8": final,
        "objective_curve": curve,
        "linf_bound_pixels": bound, "linf_max_pixels": int(realised.max()),
        "l2_mean": float(((realised.double() / 255) ** 2).flatten(1).sum(1).sqrt().mean()),
    })


class GradientCanceling(Attack):
    """Gradient canceling against the attacker's own clean model (the surrogate ResNet-18)."""

    name = "gradient_canceling"
    title = "Gradient canceling"
    changes = "images"
    Params = GradientCancelingParams

    def poison(self, data: ImageData, budget: float, params: GradientCancelingParams, rng: np.random.Generator,
               device="cpu", ctx: AttackContext | None = None) -> Poison:
        ctx = ctx or AttackContext()
        model, info = surrogate_model(data, params.surrogate, ctx, device)
        out = cancel_gradients(model, list(model.named_parameters()), data, budget, params, rng, device, ctx.log)
        out.summary["victim"] = {"model": "surrogate ResNet-18", "surrogate_test_acc": info["test_acc"]}
        return out
