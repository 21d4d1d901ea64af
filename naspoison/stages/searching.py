"""A search algorithm run on given data: the search stage's computation once its inputs are read, and what a
NAS-aware attack reruns to rebuild an evicted victim supernet (a clean search; naspoison.stages.victim)."""
from __future__ import annotations

import json

from naspoison.data.datasets import ImageData
from naspoison.nas import ALGORITHMS
from naspoison.spaces.darts import Genotype
from naspoison.stages.artifacts_io import supernet_key
from naspoison.stages.base import StageContext
from naspoison.store import content_key, state_to_bytes


def run_search(spec: dict, data: ImageData, ctx: StageContext) -> dict:
    """The search of cell ``spec`` on ``data``; ``ctx.log`` receives its progress. An algorithm whose final
    supernet is an attack target (``gc_target == "alphas"``) leaves it as an artifact."""
    p = spec["params"]
    alg = ALGORITHMS[p["algorithm"]]()
    # JSON mode: a spec read back from the store has lists where the model has tuples
    params = alg.Params.model_validate_json(json.dumps(p["algorithm_params"]))
    if alg.gc_target == "alphas":
        keep: dict = {}
        out = alg.search(data, params, p["seed"], device=ctx.device, log=ctx.log, keep=keep)
        net = keep["supernet"]
        # self-describing: a rerun on another machine may keep other ops, so rebuild from this, not the record
        ctx.artifacts.put(supernet_key(content_key(spec)), state_to_bytes(net.state_dict(), {
            "normal_ops": [list(o) for o in net.normal_ops], "reduce_ops": [list(o) for o in net.reduce_ops],
            "cells": len(net.cells), "init_channels": params.init_channels, "num_classes": data.num_classes,
            "in_channels": data.shape[2]}))
    else:
        out = alg.search(data, params, p["seed"], device=ctx.device, log=ctx.log)
    Genotype.from_dict(out["genotype"])  # an algorithm must return a valid genotype
    return out
