"""``search``: (algorithm, its params, search space, poison key, seed) -> genotype (SPEC §3 step 2), on the
(possibly poisoned, possibly sanitized) training set."""
from __future__ import annotations

from naspoison.stages.base import Stage, StageContext, _spec, added_later, dataset_identity, key_of
from naspoison.stages.sanitize import search_data
from naspoison.stages.searching import run_search

VERSION = "3"
SPACE = "darts"


def search_spec(algorithm: str, params: dict, dataset: dict, seed: int, poison: dict | None,
                sanitize: dict | None = None) -> dict:
    return _spec("search", VERSION, {"algorithm": algorithm, "algorithm_params": params, "space": SPACE,
                                     "dataset": dataset_identity(dataset), "seed": seed},
                 added_later({"poison": key_of(poison)}, sanitize=key_of(sanitize)))


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    """The search on the training set its inputs make (``ctx.dataset``: the one the search reads)."""
    return run_search(spec, search_data(inputs["poison"], inputs["sanitize"], ctx), ctx)


STAGE = Stage("search", VERSION, compute, ("poison", "sanitize"))
