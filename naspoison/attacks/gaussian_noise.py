"""Gaussian noise (clean-label): delta = sigma·N(0, I), clipped to the l_inf bound, added to p·n images.

The bound is enforced in integer pixel space, so rounding to uint8 can never exceed it.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from naspoison.attacks.base import Attack, Poison, choose_indices
from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams


class GaussianNoiseParams(StrictParams):
    sigma: float = Field(16 / 255, gt=0, description="noise std on the [0,1] pixel scale")
    epsilon: float = Field(16 / 255, gt=0, le=1, description="l_inf bound on the [0,1] pixel scale")


class GaussianNoise(Attack):
    name = "gaussian_noise"
    title = "Gaussian noise"
    changes = "images"
    Params = GaussianNoiseParams

    def poison(self, data: ImageData, budget: float, params: GaussianNoiseParams, rng: np.random.Generator,
               device="cpu", ctx=None) -> Poison:
        idx = choose_indices(rng, budget, len(data.y_train))
        x = data.x_train[idx].astype(np.int16)
        bound = int(np.floor(params.epsilon * 255 + 1e-9))   # e.g. 16/255 -> 16 pixel levels
        delta = np.rint(rng.standard_normal(x.shape) * params.sigma * 255).astype(np.int16)
        delta = np.clip(delta, -bound, bound)
        new = np.clip(x + delta, 0, 255).astype(np.uint8)
        realised = np.abs(new.astype(np.int16) - x)
        return Poison(idx, images=new, summary={
            "n_poisoned": len(idx),
            "linf_bound_pixels": bound,
            "linf_max_pixels": int(realised.max()),
            "l2_mean": float(np.sqrt(((realised / 255.0) ** 2).reshape(len(idx), -1).sum(1)).mean()),
        })
