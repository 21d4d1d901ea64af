"""Uniform random sampling from the search space: the baseline ΔImp subtracts.

Two named samplers (``sampler``):

* ``distinct`` (default, ours): per node two *distinct* inputs, uniform over the node's predecessor
  pairs, each edge with a uniform non-``none`` op (``spaces.darts.sample_genotype``).
* ``reference``: what the poisoning paper's random baseline ran (the P-DARTS fork's
  ``random_genotype.py``, ztcoalson/pdarts): each of the node's two inputs drawn independently,
  *with* replacement, from its j+2 predecessors (node j = 0..3), each with a uniform non-``none`` op,
  kept in the order drawn. A node takes the same input twice with probability 1/(j+2), so on
  average (1/2 + 1/3 + 1/4 + 1/5)/4 ≈ 0.32 of the nodes do (32 of the 80 nodes of the paper's ten
  published random genotypes, 0.40). The paper profile uses it, so ΔImp subtracts the same baseline.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from naspoison.data.datasets import ImageData
from naspoison.nas.base import NASAlgorithm
from naspoison.params import StrictParams
from naspoison.spaces.darts import N_INPUTS, N_NODES, OP_NAMES, Genotype, sample_genotype

NON_NONE_OPS: tuple[str, ...] = OP_NAMES[1:]


def sample_distinct(rng: np.random.Generator, ops: Sequence[str] = NON_NONE_OPS) -> Genotype:
    """Per node two distinct inputs (sorted), each with a uniform op from ``ops``: ``spaces.darts.sample_genotype``,
    named here beside the reference sampler."""
    return sample_genotype(rng, ops)


def sample_reference(rng: np.random.Generator) -> Genotype:
    """The reference's sampler: per node, two (op, input) draws, inputs with replacement."""
    def cell() -> tuple[tuple[str, int], ...]:
        pairs = []
        for node in range(N_INPUTS, N_INPUTS + N_NODES):
            for _ in range(2):
                op = NON_NONE_OPS[int(rng.integers(len(NON_NONE_OPS)))]
                pairs.append((op, int(rng.integers(node))))
        return tuple(pairs)

    normal, reduce = cell(), cell()
    concat = tuple(range(N_INPUTS, N_INPUTS + N_NODES))
    return Genotype(normal, concat, reduce, concat)


SAMPLERS = {"distinct": sample_genotype, "reference": sample_reference}


def duplicate_input_rate(genotypes: Sequence[Genotype]) -> float:
    """Share of nodes (both cells) whose two edges read the same input."""
    nodes = [(cell[2 * k][1] == cell[2 * k + 1][1]) for g in genotypes for cell in (g.normal, g.reduce)
             for k in range(len(cell) // 2)]
    return float(np.mean(nodes))


class RandomParams(StrictParams):
    sampler: Literal["distinct", "reference"] = "distinct"


class RandomSearch(NASAlgorithm):
    name = "random"
    title = "Random sampling"
    uses_data = False    # the sample depends on the seed only
    uses_labels = False
    Params = RandomParams

    def search(self, data: ImageData, params: RandomParams, seed: int, device="cpu", log=None) -> dict:
        genotype = SAMPLERS[params.sampler](np.random.default_rng(seed))
        return {"genotype": genotype.to_dict(), "sampler": params.sampler}
