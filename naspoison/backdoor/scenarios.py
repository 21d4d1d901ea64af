"""What a victim may do with an Evas model before using it (Evas §4.3, Tables 2–3, Figure 6). The
trigger generator stays fixed in every scenario; ACC and ASR are measured as in the backdoor cell.

* ``finetune_clean`` — fine-tune the trained model on clean data (``FinetuneRecipe``: 50 epochs,
  SGD 0.01 + cosine, batch 96; momentum 0.9 and weight decay 5e-4, which the paper does not give).
* ``retrain`` — re-initialise the model with another seed (the cell's ``seed``) and train it from
  scratch on clean data with the backdoor cell's own model recipe.
* ``poisoned_finetune`` — fine-tune as above on a training set in which ⌈``fraction``·n⌉ images
  (at least one) are replaced by their triggered copies (rounded to uint8) labelled with the target;
  the copies are made once, before augmentation, as a data poisoner would ship them.

A new scenario is one function plus one line in ``SCENARIOS``.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from pydantic import Field

from naspoison.backdoor.attack import GeneratorRecipe, attack_metrics
from naspoison.backdoor.evaluate import ModelRecipe, build_model
from naspoison.data.datasets import ImageData
from naspoison.train import PlainRecipe, fit, seed_everything


class FinetuneRecipe(PlainRecipe):
    epochs: int = Field(50, gt=0)
    batch_size: int = Field(96, gt=0)
    lr: float = Field(0.01, gt=0)


@torch.no_grad()
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


def finetune_clean(model, generator, data, recipe: ModelRecipe, finetune: FinetuneRecipe, gen: GeneratorRecipe,
                   arch: str, seed: int, fraction: float | None, device, log) -> dict:
    out = fit(model, data, finetune, seed, device,
              on_epoch=lambda e, m: log(f"fine-tune epoch {e + 1}/{finetune.epochs}: test acc {m['test_acc']:.4f}"))
    return {"curves": out["curves"]}


def retrain(model, generator, data, recipe, finetune, gen, arch, seed, fraction, device, log) -> dict:
    seed_everything(seed)
    fresh = build_model(arch, data, recipe)
    out = fit(fresh, data, recipe, seed, device,
              on_epoch=lambda e, m: log(f"re-train epoch {e + 1}/{recipe.epochs}: test acc {m['test_acc']:.4f}"))
    model.load_state_dict(fresh.state_dict())
    return {"curves": out["curves"]}


def poisoned_finetune(model, generator, data, recipe, finetune, gen, arch, seed, fraction, device, log) -> dict:
    poisoned, idx = poison_with_trigger(data, generator, fraction, gen.target, seed, device)
    log(f"fine-tuning with {len(idx)} triggered images of {len(data.x_train)} ({100 * fraction:g} %)")
    out = fit(model, poisoned, finetune, seed, device)
    return {"curves": out["curves"], "n_poisoned": len(idx)}


SCENARIOS = {f.__name__: f for f in (finetune_clean, retrain, poisoned_finetune)}
NEEDS_FRACTION = {"poisoned_finetune"}


def run_scenario(name: str, model, generator, data: ImageData, recipe: ModelRecipe, finetune: FinetuneRecipe,
                 gen: GeneratorRecipe, arch: str, seed: int, fraction: float | None, device="cpu", log=None) -> dict:
    log = log or (lambda m: None)
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if (fraction is not None) != (name in NEEDS_FRACTION):
        raise ValueError(f"scenario {name!r} {'needs' if name in NEEDS_FRACTION else 'takes no'} fraction")
    for p in generator.parameters():
        p.requires_grad_(False)
    extra = SCENARIOS[name](model, generator, data, recipe, finetune, gen, arch, seed, fraction, torch.device(device), log)
    metrics = attack_metrics(model, generator, data, gen.target, device, recipe.eval_batch_size)
    log(f"{name}: ACC {metrics['acc']:.4f}  ASR {metrics['asr']:.4f}")
    return {"scenario": name, "fraction": fraction, "arch": arch, **metrics, **extra}
