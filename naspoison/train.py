"""The retraining recipe shared by every family (P-DARTS's CIFAR evaluation defaults, paper §4.1).

SGD + cosine, momentum 0.9, wd 3e-4, grad clip 5, crop+flip+cutout on the device, auxiliary
loss weight 0.4, drop-path ramped linearly over the epochs, and the **final-epoch** test accuracy
(never the best epoch on the test set).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from naspoison.data.augment import DeviceImages, augment, channel_stats, cutout
from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison.run import checkpoint, machine
from naspoison.spaces.darts import Genotype
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())
darts_net = lazy("naspoison.spaces.darts_net", globals())  # a torch module: loaded at first use


# Numerics of a computation, part of its key: a store never holds bf16 and fp32 cells under one key.
# fp32 (the papers' precision) by default on every device; bf16 autocast only when a profile asks.
Precision = Literal["fp32", "bf16"]


class Recipe(StrictParams):
    """Published values are the defaults (P-DARTS ``train_cifar.py``: 600 epochs, 36 channels, 20 cells)."""
    epochs: int = Field(600, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.025, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    init_channels: int = Field(36, gt=0)
    layers: int = Field(20, ge=3)
    auxiliary_weight: float = Field(0.4, ge=0)
    drop_path_prob: float = Field(0.3, ge=0, lt=1)
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    cutout: int = Field(16, ge=0)
    eval_batch_size: int = Field(500, gt=0)
    lr_min: float = Field(0.0, ge=0, description="cosine schedule floor (RoBoT's query training: 5e-3)")
    precision: Precision = "fp32"


class PlainRecipe(StrictParams):
    """SGD + cosine for a network without auxiliary head or drop-path (ResNet-18, NB201 cells): the fields
    the shared loop reads, with the usual CIFAR values (momentum 0.9, wd 5e-4, crop + flip, no cutout).
    Each use (the surrogate, the Evas models, fine-tuning) subclasses it with its own epochs and batch."""
    epochs: int = Field(60, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(5e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    cutout: int = Field(0, ge=0)
    eval_batch_size: int = Field(500, gt=0)
    # fixed for these networks (read by the shared loop)
    auxiliary_weight: float = Field(0.0, ge=0, le=0)
    drop_path_prob: float = Field(0.0, ge=0, le=0)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_for(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on any device when the recipe says ``bf16``; otherwise plain fp32 (also on CUDA)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision {precision!r}: expected 'fp32' or 'bf16'")
    return torch.autocast(device.type, enabled=False)


@no_grad
def evaluate(model: nn.Module, data: DeviceImages, batch_size: int, precision: str = "fp32") -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.x.device)
    with autocast_for(data.x.device, precision):
        for i in range(0, len(data), batch_size):
            logits, _ = model(data.normalise(data.x[i:i + batch_size]))
            correct += (logits.argmax(1) == data.y[i:i + batch_size]).sum()
    return correct.item() / len(data)


def build_eval_network(genotype: Genotype, data: ImageData, recipe: Recipe) -> darts_net.EvalNetwork:
    h, _, c = data.shape
    return darts_net.EvalNetwork(genotype, recipe.init_channels, recipe.layers, data.num_classes, in_channels=c,
                       auxiliary=recipe.auxiliary_weight > 0, image_size=h)


def train_genotype(genotype: Genotype, data: ImageData, recipe: Recipe, seed: int,
                   device: torch.device | str = "cpu",
                   on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``genotype`` from scratch on ``data`` (clean) and return the final-epoch test accuracy,
    per-epoch curves and parameter count (wall time is in the record's provenance). Deterministic on CPU for a given seed."""
    return fit(seeded_eval_network(genotype, data, recipe, seed), data, recipe, seed, device, on_epoch,
               test_every_epoch=False)


def seeded_eval_network(genotype: Genotype, data: ImageData, recipe: Recipe, seed: int) -> darts_net.EvalNetwork:
    seed_everything(seed)  # the initial weights, then drop-path draws, follow from the seed
    return build_eval_network(genotype, data, recipe)


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model, backend=...)`` when this run asked for it (``naspoison bench --compile BACKEND``,
    ``naspoison.bench(compile=...)``: :mod:`naspoison.run.machine`), else the model itself. A speed option, not
    part of any cell's key: compiled kernels may round differently from eager ones, so a store should be filled
    one way or the other."""
    backend = machine.current().compile
    return torch.compile(model, backend=backend) if backend else model


def fit(model: nn.Module, data: ImageData, recipe, seed: int, device: torch.device | str = "cpu",
        on_epoch: Callable[[int, dict], None] | None = None, test_every_epoch: bool = True) -> dict:
    """The shared loop: train ``model`` in place on ``data`` with ``recipe`` (a :class:`Recipe` or any
    object with its training fields) and return the final-epoch test accuracy, curves and parameter
    count. ``model(x)`` returns ``(logits, auxiliary logits or None)``. ``test_every_epoch=False``
    evaluates the test set after the last epoch only (the test curve holds None before it): only the
    final epoch is ever reported, and evaluation draws no random numbers, so the result is the same."""
    device = torch.device(device)
    mean, std = channel_stats(data.x_train)
    train = DeviceImages(data.x_train, data.y_train, device, mean, std)
    test = DeviceImages(data.x_test, data.y_test, device, mean, std)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step_model = compiled(model)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    # recipes without these fields (the Evas models, fine-tuning) run fp32 with a zero floor
    precision, lr_min = getattr(recipe, "precision", "fp32"), getattr(recipe, "lr_min", 0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs, eta_min=lr_min)
    gen = torch.Generator(device=device).manual_seed(seed)
    criterion = nn.CrossEntropyLoss()
    curves: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "test_acc": [], "lr": []}
    n = len(train)
    steps = math.ceil(n / recipe.batch_size)
    ck = checkpoint.loop("fit", [model], [opt], [sched], [gen])
    start = ck.resume({"epoch": 0, "curves": curves})
    curves = start["curves"]
    for epoch in range(start["epoch"], recipe.epochs):
        model.train()
        model.drop_path_prob = recipe.drop_path_prob * epoch / recipe.epochs
        perm = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for s in range(steps):
            idx = perm[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            xb = augment(train.x[idx], gen, recipe.crop_padding, recipe.flip)
            xb = cutout(train.normalise(xb), gen, recipe.cutout)
            yb = train.y[idx]
            with autocast_for(device, precision):
                logits, aux = step_model(xb)
                loss = criterion(logits, yb)
                if aux is not None:
                    loss = loss + recipe.auxiliary_weight * criterion(aux, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
        curves["lr"].append(sched.get_last_lr()[0])
        sched.step()
        curves["train_loss"].append(loss_sum.item() / n)  # one host sync per epoch, not per step
        curves["train_acc"].append(correct.item() / n)
        last = epoch == recipe.epochs - 1
        curves["test_acc"].append(evaluate(model, test, recipe.eval_batch_size, precision)
                                  if last or test_every_epoch else None)
        if not math.isfinite(curves["train_loss"][-1]):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss {curves['train_loss'][-1]}")
        if on_epoch:
            on_epoch(epoch, {k: v[-1] for k, v in curves.items()})
        ck.save_if_due(lambda e=epoch: {"epoch": e + 1, "curves": curves}, final=epoch + 1 == recipe.epochs)
    return {
        "test_acc": curves["test_acc"][-1],  # final epoch, by design
        "curves": curves,
        "params": darts_net.count_parameters(model),
        "n_train": n,
        "n_test": len(test),
    }
