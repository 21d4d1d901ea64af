"""Random label flipping: p·n samples get a uniformly random *different* label."""
from __future__ import annotations

import numpy as np

from naspoison.attacks.base import Attack, NoParams, Poison, choose_indices
from naspoison.data.datasets import ImageData


class RandomLabelFlip(Attack):
    name = "random_label_flip"
    title = "Random label-flipping"
    changes = "labels"
    Params = NoParams

    def poison(self, data: ImageData, budget: float, params: NoParams, rng: np.random.Generator, device="cpu",
               ctx=None) -> Poison:
        idx = choose_indices(rng, budget, len(data.y_train))
        old = data.y_train[idx]
        # y' = (y + U{1..C-1}) mod C: uniform over the other C-1 classes, never the same label
        new = (old + rng.integers(1, data.num_classes, size=len(idx))) % data.num_classes
        return Poison(idx, labels=new.astype(np.int64), summary={
            "n_poisoned": len(idx),
            "new_label_histogram": np.bincount(new, minlength=data.num_classes).tolist(),
            "old_label_histogram": np.bincount(old, minlength=data.num_classes).tolist(),
        })
