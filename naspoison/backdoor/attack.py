"""Training the trigger generator against a frozen, cleanly trained model, and measuring ACC/ASR
(Evas §4.1 and appendix Table 6; the input-aware attack of Nguyen & Tran 2020 without poisoning:
the model never sees a trigger).

Stage 1, ``mask_epochs``: the mask generator alone, loss = ``mask_norm_weight``·mean(relu(m −
``mask_density``)) (per pixel, as both references: every pixel above the density is pushed down) +
``diversity_weight``·div(x₁, x₂; m₁, m₂). Stage 2, ``pattern_epochs``: the mask generator frozen, the
pattern generator trained on each batch (``batch_size``): the first ⌊``backdoor_prob``·B⌋ images get
their own trigger and the target label, the next ⌊``cross_prob``·B⌋ get the trigger generated from
*another* image (a second shuffled batch) and keep their label, the rest stay clean; loss =
cross-entropy over the batch + ``diversity_weight``·div. The clean rows pass through the frozen model
unchanged and add a constant, so they are not computed; the loss is still divided by B, as the
whole-batch mean would be.

div = mean over pairs of d(a₁, a₂) / (d(b₁, b₂) + ε), by variant (``variants.Variant``):

* ``trojanzoo`` (what Evas ran, ``InputAwareDynamic``): d the per-sample L2 norm, ε 1e-5. Mask stage:
  a the two source images, b their masks. Pattern stage: pair i is backdoor row i and cross row i
  (i < min(#backdoor, #cross)); a the two *triggered* images (own trigger, cross trigger), b the two
  patterns that made them — minimising it pushes the patterns apart.
* ``vinai`` (``train.py`` of the input-aware attack): d the per-sample RMS of the *normalised*
  difference (its MSE then sqrt), ε 1e-7; a the two source images and b their masks / patterns (backdoor
  row i of the first batch against cross-source row i of the second).

Optimiser (``adam_betas``, ``lr_schedule``): both references use Adam(0.01, betas (0.5, 0.9)) with a
cosine decay over each stage's epochs (trojanzoo) — the default here. The paper's Table 6 gives the
epochs, Adam 0.01, batch 96, probabilities 0.1 and weight 1; the mask density 0.032 and norm weight
100 are the input-aware attack's CIFAR defaults. Training images get the crop + flip of the model's
recipe.

ACC: the frozen model's accuracy on clean test images. ASR: the fraction of triggered test images
whose true class is not the target that the model assigns to the target.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from naspoison.data.augment import DeviceImages, augment, channel_stats
from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison.run import checkpoint
from naspoison.train import evaluate, seed_everything
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
F = lazy("torch.nn.functional", globals(), "F")
nn = lazy("torch.nn", globals())
generator_net = lazy("naspoison.backdoor.generator", globals(), "generator_net")  # a torch module: loaded at first use


class GeneratorRecipe(StrictParams):
    variant: str = "trojanzoo"
    channels: int = Field(32, gt=0)
    mask_epochs: int = Field(25, ge=0)
    pattern_epochs: int = Field(10, gt=0)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(96, gt=1)
    backdoor_prob: float = Field(0.1, gt=0, le=1)
    cross_prob: float = Field(0.1, ge=0, lt=1)
    diversity_weight: float = Field(1.0, ge=0)
    mask_density: float = Field(0.032, gt=0, le=1)
    mask_norm_weight: float = Field(100.0, ge=0)
    target: int = Field(0, ge=0)
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    eval_batch_size: int = Field(500, gt=0)
    # both references: Adam(0.01, betas (0.5, 0.9)), cosine over each stage (the pre-fidelity code: default
    # betas (0.9, 0.999) and a constant lr)
    adam_betas: list[float] = Field(default_factory=lambda: [0.5, 0.9], min_length=2, max_length=2)
    lr_schedule: Literal["cosine", "constant"] = "cosine"

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, v):
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"Adam betas must lie in [0, 1), got {v}")
        return v


def mask_norm_penalty(m: torch.Tensor, density: float) -> torch.Tensor:
    """mean over pixels of relu(m − density): each pixel above the density costs, whatever the mean."""
    return F.relu(m - density).mean()


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample distance: ``l2`` the Euclidean norm of the difference, ``rms`` its root mean square."""
    sq = (a - b).pow(2).flatten(1)
    # clamped: sqrt has an infinite derivative at 0 (two identical saturated patterns)
    return (sq.sum(1) if kind == "l2" else sq.mean(1)).clamp_min(1e-12).sqrt()


def diversity(src1, src2, out1, out2, kind: str = "l2", eps: float = 1e-5) -> torch.Tensor:
    """mean of d(src1, src2) / (d(out1, out2) + eps) over the rows."""
    return (distance(src1, src2, kind) / (distance(out1, out2, kind) + eps)).mean()


def pattern_diversity(g: generator_net.TriggerGenerator, x1, x2, trig1, cross, pat1, pat2c, n_bd: int) -> torch.Tensor:
    """The pattern-stage diversity term of ``g``'s variant (module docstring). ``x1``/``trig1``/``pat1``:
    rows of the first batch (backdoor rows first, then cross rows); ``x2``/``pat2c``: the cross-source rows
    of the second batch, aligned with ``cross`` (the cross-triggered rows of the first)."""
    v = g.variant
    n = min(n_bd, len(cross))
    if n == 0:  # no pair (trojanzoo then adds nothing)
        return trig1.new_zeros(())
    if v.diversity_on_triggered:
        return diversity(trig1[:n], cross[:n], pat1[:n], pat2c[:n], v.distance, v.eps)
    s = g.std
    return diversity(x1[:n] / s, x2[:n] / s, pat1[:n] / s, pat2c[:n] / s, v.distance, v.eps)


def mask_diversity(g: generator_net.TriggerGenerator, x1, x2, m1, m2) -> torch.Tensor:
    v = g.variant
    s = g.std if v.normalised_input else 1.0  # vinai measures the normalised images
    return diversity(x1 / s, x2 / s, m1, m2, v.distance, v.eps)


def _adam(params, recipe: GeneratorRecipe, epochs: int):
    opt = torch.optim.Adam(params, lr=recipe.lr, betas=tuple(recipe.adam_betas))
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs)) if recipe.lr_schedule == "cosine"
             else None)
    return opt, sched


def _x01(images: DeviceImages, idx: torch.Tensor, gen: torch.Generator, recipe: GeneratorRecipe) -> torch.Tensor:
    return augment(images.x[idx], gen, recipe.crop_padding, recipe.flip).float().div(255)


def row_counts(recipe: "GeneratorRecipe", batch: int) -> tuple[int, int]:
    """Backdoor and cross-trigger rows of every full batch: ⌊p·B⌋ each (VinAI's int(p·B); trojanzoo adds a
    Bernoulli of the fraction — the ledger row explains the choice)."""
    return int(recipe.backdoor_prob * batch), int(recipe.cross_prob * batch)


def train_generator(model: nn.Module, data: ImageData, recipe: GeneratorRecipe, seed: int,
                    device: torch.device | str = "cpu",
                    on_epoch: Callable[[str, int, dict], None] | None = None) -> tuple[generator_net.TriggerGenerator, dict]:
    """Train a trigger generator for ``model`` (frozen: eval mode, no weight changes)."""
    device = torch.device(device)
    if not 0 <= recipe.target < data.num_classes:
        raise ValueError(f"target class {recipe.target} outside 0..{data.num_classes - 1}")
    mean, std = channel_stats(data.x_train)
    train = DeviceImages(data.x_train, data.y_train, device, mean, std)
    seed_everything(seed)
    g = generator_net.TriggerGenerator(data.shape[2], recipe.variant, recipe.channels, mean, std).to(device)
    model = model.to(device).eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    rng = torch.Generator(device=device).manual_seed(seed)
    n, b = len(train), recipe.batch_size
    steps = n // b  # full batches only: the pair (x1, x2) and the row counts stay fixed
    if steps == 0:
        raise ValueError(f"batch {b} is larger than the training set ({n})")
    n_bd, n_cross = row_counts(recipe, b)
    if n_bd == 0:
        raise ValueError(f"backdoor_prob {recipe.backdoor_prob} × batch {b} leaves no triggered row")
    curves: dict[str, list[float]] = {"mask_loss": [], "mask_density": [], "pattern_loss": [], "pattern_asr": []}
    try:
        opt, sched = _adam(g.mask_net.parameters(), recipe, recipe.mask_epochs)
        ck = checkpoint.loop("generator_mask", [g], [opt], [sched] if sched is not None else [], generators=[rng])
        start = ck.resume({"epoch": 0, "curves": curves})
        curves = start["curves"]
        for epoch in range(start["epoch"], recipe.mask_epochs):
            g.mask_net.train()
            p1, p2 = torch.randperm(n, generator=rng, device=device), torch.randperm(n, generator=rng, device=device)
            tot = dens = 0.0
            for s in range(steps):
                x1, x2 = _x01(train, p1[s * b:(s + 1) * b], rng, recipe), _x01(train, p2[s * b:(s + 1) * b], rng, recipe)
                m1, m2 = g.mask(x1), g.mask(x2)
                loss = (recipe.mask_norm_weight * mask_norm_penalty(m1, recipe.mask_density)
                        + recipe.diversity_weight * mask_diversity(g, x1, x2, m1, m2))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += loss.item()
                dens += m1.mean().item()
            if sched is not None:
                sched.step()
            curves["mask_loss"].append(tot / steps)
            curves["mask_density"].append(dens / steps)
            if on_epoch:
                on_epoch("mask", epoch, {"loss": tot / steps, "density": dens / steps})
            ck.save_if_due(lambda e=epoch: {"epoch": e + 1, "curves": curves}, final=epoch + 1 == recipe.mask_epochs)
        g.mask_net.eval()
        for p in g.mask_net.parameters():
            p.requires_grad_(False)
        opt, sched = _adam(g.pattern_net.parameters(), recipe, recipe.pattern_epochs)
        target = torch.full((n_bd,), recipe.target, dtype=torch.long, device=device)
        ck = checkpoint.loop("generator_pattern", [g], [opt], [sched] if sched is not None else [], generators=[rng])
        start = ck.resume({"epoch": 0, "curves": curves})
        curves = start["curves"]
        for epoch in range(start["epoch"], recipe.pattern_epochs):
            g.pattern_net.train()
            p1, p2 = torch.randperm(n, generator=rng, device=device), torch.randperm(n, generator=rng, device=device)
            tot = hits = 0.0
            for s in range(steps):
                i1, i2 = p1[s * b:(s + 1) * b], p2[s * b:(s + 1) * b]
                x1, x2 = _x01(train, i1, rng, recipe), _x01(train, i2, rng, recipe)
                k = n_bd + n_cross
                a1, a2 = x1[:n_bd], x2[n_bd:k]  # backdoor rows; the cross rows' trigger sources
                pat1, m1 = g.pattern(a1), g.mask(a1)
                pat2, m2 = g.pattern(a2), g.mask(a2)
                trig1 = (1 - m1) * a1 + m1 * pat1
                cross = (1 - m2) * x1[n_bd:k] + m2 * pat2
                logits = model(train_normalise(train, torch.cat([trig1, cross])))[0]
                labels = torch.cat([target, train.y[i1[n_bd:k]]])
                ce = F.cross_entropy(logits, labels, reduction="sum") / b
                div = pattern_diversity(g, a1, a2, trig1, cross, pat1, pat2, n_bd)
                loss = ce + recipe.diversity_weight * div
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += loss.item()
                hits += (logits[:n_bd].argmax(1) == recipe.target).float().mean().item()
            if sched is not None:
                sched.step()
            curves["pattern_loss"].append(tot / steps)
            curves["pattern_asr"].append(hits / steps)
            if not math.isfinite(curves["pattern_loss"][-1]):
                raise FloatingPointError(f"generator training diverged at pattern epoch {epoch}")
            if on_epoch:
                on_epoch("pattern", epoch, {"loss": tot / steps, "train_asr": hits / steps})
            ck.save_if_due(lambda e=epoch: {"epoch": e + 1, "curves": curves}, final=epoch + 1 == recipe.pattern_epochs)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return g.eval(), {"curves": curves, "backdoor_rows": n_bd, "cross_rows": n_cross, "steps_per_epoch": steps}


def train_normalise(images: DeviceImages, x01: torch.Tensor) -> torch.Tensor:
    return (x01 - images.mean) / images.std


@no_grad
def attack_metrics(model: nn.Module, generator: generator_net.TriggerGenerator, data: ImageData, target: int,
                   device: torch.device | str = "cpu", batch_size: int = 500) -> dict:
    """ACC on clean test images; ASR on triggered test images whose true class is not ``target``."""
    device = torch.device(device)
    mean, std = channel_stats(data.x_train)
    test = DeviceImages(data.x_test, data.y_test, device, mean, std)
    model, generator = model.to(device).eval(), generator.to(device).eval()
    acc = evaluate(model, test, batch_size)
    keep = torch.nonzero(test.y != target).flatten()
    hits = 0
    for i in range(0, len(keep), batch_size):
        idx = keep[i:i + batch_size]
        x = generator(test.x[idx].float().div(255))
        hits += int((model(train_normalise(test, x))[0].argmax(1) == target).sum())
    return {"acc": acc, "asr": hits / max(1, len(keep)), "n_asr": len(keep), "n_test": len(test)}
