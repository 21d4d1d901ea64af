"""``evas_search``: the Evas search for architectures with inherent backdoors (NB201 space), on clean data."""
from __future__ import annotations

import json

from naspoison.data.datasets import load_dataset
from naspoison.nas.evas import EvasParams, EvasSearch
from naspoison.stages.base import Stage, StageContext, _spec, dataset_identity

VERSION = "2"


def evas_search_spec(params: dict, dataset: dict, seed: int) -> dict:
    return _spec("evas_search", VERSION, {"algorithm": "evas", "algorithm_params": params, "space": "nb201",
                                          "dataset": dataset_identity(dataset), "seed": seed}, {})


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    """Evas search on clean data; every architecture score is also an artifact (shared with other searches)."""
    p = spec["params"]
    params = EvasParams.model_validate_json(json.dumps(p["algorithm_params"]))
    return EvasSearch().search(load_dataset(ctx.dataset), params, p["seed"], ctx.device, ctx.log, ctx.artifacts,
                               dataset_identity(ctx.dataset))


STAGE = Stage("evas_search", VERSION, compute)
