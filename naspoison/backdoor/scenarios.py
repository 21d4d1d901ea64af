"""What a victim may do with an Evas model before using it (Evas §4.3, Tables 2–3, Figure 6). The
trigger generator stays fixed in every scenario; ACC and ASR are measured as in the backdoor cell.

* ``finetune_clean`` — fine-tune the trained model on clean data (``FinetuneRecipe``: 50 epochs,
  SGD 0.01 + cosine, batch 96; momentum 0.9 and weight decay 5e-4, which the paper does not give).
* ``retrain`` — re-initialise the model with another seed (the cell's ``seed``) and train it from
  scratch on clean data with the backdoor cell's own model recipe.
* ``poisoned_finetune`` — fine-tune as above with triggered images in the data, by
  ``FinetuneRecipe.poison_mode``:

  - ``fixed_set`` (default, ours): ⌈``fraction``·n⌉ images (at least one) are replaced by their
    triggered copies (rounded to uint8) labelled with the target; the copies are made once, before
    augmentation, as a data poisoner would ship them.
  - ``per_batch`` (Evas's ``poison_ratio.py``): every batch (after augmentation) gets fresh triggered
    rows — fraction·B of them, the fractional part rounded up with that probability — labelled with the
    target, then ``cross_fraction``·B rows (same rounding) carrying the trigger of another image (a
    second shuffled batch) with their own label; Evas fine-tunes 10 epochs this way (the paper profile).
    The reference reports the best-ASR epoch; here, as everywhere, the final epoch.

A new scenario is one :class:`Scenario` subclass plus one line in ``SCENARIOS``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from naspoison.backdoor.attack import GeneratorRecipe, attack_metrics
from naspoison.backdoor.evaluate import ModelRecipe, build_model
from naspoison.data.datasets import ImageData
from naspoison.data.augment import DeviceImages, augment, channel_stats
from naspoison.registry import lookup
from naspoison.train import PlainRecipe, evaluate, fit, seed_everything
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())


class FinetuneRecipe(PlainRecipe):
    epochs: int = Field(50, gt=0)
    batch_size: int = Field(96, gt=0)
    lr: float = Field(0.01, gt=0)
    poison_mode: Literal["fixed_set", "per_batch"] = "fixed_set"  # poisoned_finetune only (module docstring)
    cross_fraction: float = Field(0.1, ge=0, lt=1, description="per_batch: cross-trigger rows per batch")
    # poisoned_finetune's epochs when they differ from clean fine-tuning's (Evas: 10 vs 50); None: ``epochs``
    poisoned_epochs: int | None = Field(None, gt=0)


@no_grad
def poison_with_trigger(data: ImageData, generator, fraction: float, target: int, seed: int,
                        device="cpu") -> tuple[ImageData, np.ndarray]:
    """A copy of ``data`` with ⌈fraction·n⌉ (≥ 1) random training images triggered and relabelled."""
    n = len(data.x_train)
    k = max(1, math.ceil(fraction * n))
    idx = np.sort(np.random.default_rng([seed, 0xF1]).choice(n, k, replace=False))
    x = torch.from_numpy(data.x_train[idx]).permute(0, 3, 1, 2).float().div(255).to(device)
    xt = generator.to(device).eval()(x).mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    x_train, y_train = data.x_train.copy(), data.y_train.copy()
    x_train[idx], y_train[idx] = xt, target
    return replace(data, x_train=x_train, y_train=y_train), idx


class Scenario:
    """What a victim does with an Evas model before using it: the protocol every entry of ``SCENARIOS``
    subclasses. ``run`` changes ``model`` in place (the generator stays fixed) and returns what it measured
    besides ACC/ASR, which ``run_scenario`` measures afterwards for every scenario alike."""

    name: ClassVar[str]
    """The registry key and the name in suite.yaml and in keys."""
    title: ClassVar[str]
    """How tables name it."""
    needs_fraction: ClassVar[bool] = False
    """True: the cell takes a poisoned ``fraction`` (one cell per ``poison_fractions`` entry); False: None."""

    def run(self, model, generator, data: ImageData, recipe: ModelRecipe, finetune: FinetuneRecipe,
            gen: GeneratorRecipe, arch: str, seed: int, fraction: float | None, device,
            log: Callable[[str], None]) -> dict:
        raise NotImplementedError


class FinetuneClean(Scenario):
    name = "finetune_clean"
    title = "Fine-tuning with clean data (Evas Table 2)"

    def run(self, model, generator, data, recipe, finetune, gen, arch, seed, fraction, device, log) -> dict:
        out = fit(model, data, finetune, seed, device,
                  on_epoch=lambda e, m: log(f"fine-tune epoch {e + 1}/{finetune.epochs}: test acc {m['test_acc']:.4f}"))
        return {"curves": out["curves"]}


class Retrain(Scenario):
    name = "retrain"
    title = "Re-training from scratch, generator fixed (Evas Table 3)"

    def run(self, model, generator, data, recipe, finetune, gen, arch, seed, fraction, device, log) -> dict:
        seed_everything(seed)
        fresh = build_model(arch, data, recipe)
        out = fit(fresh, data, recipe, seed, device,
                  on_epoch=lambda e, m: log(f"re-train epoch {e + 1}/{recipe.epochs}: test acc {m['test_acc']:.4f}"))
        model.load_state_dict(fresh.state_dict())
        return {"curves": out["curves"]}


def _rows(b: int, fraction: float, gen: torch.Generator) -> int:
    """⌊fraction·b⌋, plus one with probability equal to the fractional part (the reference's rounding)."""
    whole = math.floor(fraction * b)
    return whole + int(torch.rand((), generator=gen).item() < fraction * b - whole)


def fit_per_batch_poison(model, generator, data: ImageData, recipe: FinetuneRecipe, fraction: float, target: int,
                         seed: int, device, log=None) -> dict:
    """The shared loop's fine-tuning (SGD + cosine, crop + flip, clip) with freshly triggered rows in every
    batch: the first ``_rows(B, fraction)`` get their own trigger and the target, the next
    ``_rows(B, cross_fraction)`` the trigger of a row of a second shuffled batch and keep their label."""
    device = torch.device(device)
    mean, std = channel_stats(data.x_train)
    train = DeviceImages(data.x_train, data.y_train, device, mean, std)
    test = DeviceImages(data.x_test, data.y_test, device, mean, std)
    model, generator = model.to(device), generator.to(device).eval()
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs)
    gen = torch.Generator(device=device).manual_seed(seed)
    rounding = torch.Generator().manual_seed(seed)  # CPU: the row counts do not depend on the device
    n, bsz = len(train), recipe.batch_size
    curves: dict[str, list[float]] = {"train_loss": [], "test_acc": [], "lr": []}
    n_triggered = n_cross = 0
    for epoch in range(recipe.epochs):
        model.train()
        perm, perm2 = torch.randperm(n, generator=gen, device=device), torch.randperm(n, generator=gen, device=device)
        loss_sum = 0.0
        for s in range(math.ceil(n / bsz)):
            idx, idx2 = perm[s * bsz:(s + 1) * bsz], perm2[s * bsz:(s + 1) * bsz]
            x = augment(train.x[idx], gen, recipe.crop_padding, recipe.flip).float().div(255)
            x2 = augment(train.x[idx2], gen, recipe.crop_padding, recipe.flip).float().div(255)
            y = train.y[idx].clone()
            b = len(idx)
            k = min(b, _rows(b, fraction, rounding))
            c = min(b - k, len(idx2) - k, _rows(b, recipe.cross_fraction, rounding))
            with torch.no_grad():
                if k:
                    x[:k] = generator(x[:k])
                    y[:k] = target
                if c:
                    x[k:k + c] = generator(x[k:k + c], source=x2[k:k + c])
            n_triggered, n_cross = n_triggered + k, n_cross + c
            loss = torch.nn.functional.cross_entropy(model((x - train.mean) / train.std)[0], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            loss_sum += loss.item() * b
        curves["lr"].append(sched.get_last_lr()[0])
        sched.step()
        curves["train_loss"].append(loss_sum / n)
        curves["test_acc"].append(evaluate(model, test, recipe.eval_batch_size))
        if not math.isfinite(curves["train_loss"][-1]):
            raise FloatingPointError(f"poisoned fine-tuning diverged at epoch {epoch}")
        if log:
            log(f"poisoned fine-tune epoch {epoch + 1}/{recipe.epochs}: test acc {curves['test_acc'][-1]:.4f}")
    return {"curves": curves, "n_triggered_rows": n_triggered, "n_cross_rows": n_cross}


class PoisonedFinetune(Scenario):
    name = "poisoned_finetune"
    title = "Fine-tuning with poisoned data (Evas Figure 6)"
    needs_fraction = True

    def run(self, model, generator, data, recipe, finetune, gen, arch, seed, fraction, device, log) -> dict:
        if finetune.poisoned_epochs is not None:
            finetune = finetune.model_copy(update={"epochs": finetune.poisoned_epochs})
        if finetune.poison_mode == "per_batch":
            out = fit_per_batch_poison(model, generator, data, finetune, fraction, gen.target, seed, device, log)
            log(f"fine-tuned with {out['n_triggered_rows']} triggered and {out['n_cross_rows']} cross rows in all")
            return {"curves": out["curves"], "n_triggered_rows": out["n_triggered_rows"], "n_cross_rows": out["n_cross_rows"]}
        poisoned, idx = poison_with_trigger(data, generator, fraction, gen.target, seed, device)
        log(f"fine-tuning with {len(idx)} triggered images of {len(data.x_train)} ({100 * fraction:g} %)")
        out = fit(model, poisoned, finetune, seed, device)
        return {"curves": out["curves"], "n_poisoned": len(idx)}


SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in (FinetuneClean, Retrain, PoisonedFinetune)}


def get(name: str) -> type[Scenario]:
    """The scenario class called ``name``; a KeyError naming the nearest one otherwise."""
    return lookup(SCENARIOS, name, "scenario")


def run_scenario(name: str, model, generator, data: ImageData, recipe: ModelRecipe, finetune: FinetuneRecipe,
                 gen: GeneratorRecipe, arch: str, seed: int, fraction: float | None, device="cpu", log=None) -> dict:
    log = log or (lambda m: None)
    scenario = get(name)
    if (fraction is not None) != scenario.needs_fraction:
        raise ValueError(f"scenario {name!r} {'needs' if scenario.needs_fraction else 'takes no'} fraction")
    for p in generator.parameters():
        p.requires_grad_(False)
    extra = scenario().run(model, generator, data, recipe, finetune, gen, arch, seed, fraction, torch.device(device), log)
    metrics = attack_metrics(model, generator, data, gen.target, device, recipe.eval_batch_size)
    log(f"{name}: ACC {metrics['acc']:.4f}  ASR {metrics['asr']:.4f}")
    return {"scenario": name, "fraction": fraction, "arch": arch, **metrics, **extra}
