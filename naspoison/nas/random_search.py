"""Uniform random sampling from the search space: the baseline ΔImp subtracts."""
from __future__ import annotations

import numpy as np

from naspoison.attacks.base import NoParams
from naspoison.data.datasets import ImageData
from naspoison.spaces.darts import sample_genotype


class RandomSearch:
    name = "random"
    uses_data = False    # the sample depends on the seed only
    uses_labels = False
    Params = NoParams

    def search(self, data: ImageData, params: NoParams, seed: int, device="cpu", log=None) -> dict:
        genotype = sample_genotype(np.random.default_rng(seed))
        return {"genotype": genotype.to_dict()}
