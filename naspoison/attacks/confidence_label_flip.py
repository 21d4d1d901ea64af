"""Confidence-based label flipping (the poisoning paper's Algorithm 1).

A surrogate trained on the clean set scores every training sample (eval mode, no augmentation);
the p·n samples with the highest maximum logit (ties: lower index first) get the label the
surrogate finds least likely (arg-min logit; ties: lower class). Unlike random flipping, the least
likely class may — rarely — be the sample's own label; the count is recorded.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from naspoison.attacks.base import Attack, AttackContext, Poison, poison_count
from naspoison.attacks.surrogate import SurrogateRecipe, surrogate_model
from naspoison.data.augment import DeviceImages, channel_stats
from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())


class ConfidenceLabelFlipParams(StrictParams):
    surrogate: SurrogateRecipe = Field(default_factory=SurrogateRecipe)


@no_grad
def logits_of(model: torch.nn.Module, data: ImageData, device="cpu", batch_size: int = 500) -> np.ndarray:
    """Float64 logits of every training sample, model in eval mode, inputs normalised by the clean
    training set's channel statistics (as in training), no augmentation."""
    mean, std = channel_stats(data.x_train)
    imgs = DeviceImages(data.x_train, data.y_train, torch.device(device), mean, std)
    model.eval()
    out = [model(imgs.normalise(imgs.x[i:i + batch_size]))[0].double().cpu() for i in range(0, len(imgs), batch_size)]
    return torch.cat(out).numpy()


def flip_most_confident(logits: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (sorted) of the p·n highest maximum logits and their new labels (arg-min logit)."""
    k = poison_count(budget, len(logits))
    order = np.argsort(-logits.max(1), kind="stable")  # decreasing confidence, lower index first on ties
    chosen = order[:k]
    new = logits[chosen].argmin(1)
    keep = np.argsort(chosen)
    return chosen[keep].astype(np.int64), new[keep].astype(np.int64)


class ConfidenceLabelFlip(Attack):
    name = "confidence_label_flip"
    title = "Confidence-based label-flipping"
    changes = "labels"
    Params = ConfidenceLabelFlipParams

    def poison(self, data: ImageData, budget: float, params: ConfidenceLabelFlipParams, rng: np.random.Generator,
               device="cpu", ctx: AttackContext | None = None) -> Poison:
        ctx = ctx or AttackContext()
        model, info = surrogate_model(data, params.surrogate, ctx, device)
        logits = logits_of(model, data, device)
        idx, new = flip_most_confident(logits, budget)
        old = data.y_train[idx]
        return Poison(idx, labels=new, summary={
            "n_poisoned": len(idx),
            "surrogate_test_acc": info["test_acc"],
            "surrogate_train_acc": float((logits.argmax(1) == data.y_train).mean()),
            "unchanged_labels": int((new == old).sum()),
            "min_confidence_flipped": float(logits[idx].max(1).min()),
            "new_label_histogram": np.bincount(new, minlength=data.num_classes).tolist(),
            "old_label_histogram": np.bincount(old, minlength=data.num_classes).tolist(),
        })
