"""``sanitize``: a countermeasure applied to a (possibly poisoned) training set before the search (the
defended-search family); its result is an artifact the search reads."""
from __future__ import annotations

import json

from naspoison.data.datasets import ImageData, load_dataset
from naspoison.sanitize import SANITIZERS, Sanitized
from naspoison.stages.artifacts_io import load_artifact, recomputed, record_of
from naspoison.stages.base import Stage, StageContext, _spec, dataset_identity, key_of
from naspoison.stages.poison import poisoned_data
from naspoison.store import content_key

VERSION = "1"


def sanitize_spec(countermeasure: str, params: dict, dataset: dict, seed: int, poison: dict | None) -> dict:
    """A countermeasure applied to a (possibly poisoned) training set before the search (its key names it
    ``defense``, the field's name since the stage shipped)."""
    return _spec("sanitize", VERSION, {"defense": countermeasure, "defense_params": params,
                                       "dataset": dataset_identity(dataset), "seed": seed},
                 {"poison": key_of(poison)})


def make_sanitized(spec: dict, poison: dict | None, ctx: StageContext) -> Sanitized:
    p = spec["params"]
    sanitizer = SANITIZERS[p["defense"]]()
    params = sanitizer.Params.model_validate_json(json.dumps(p["defense_params"]))
    data = poisoned_data(poison, ctx)
    return sanitizer.apply(data, params, p["seed"], ctx.device, ctx.log, clean_labels=load_dataset(ctx.dataset).y_train)


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    s = make_sanitized(spec, inputs["poison"], ctx)
    ctx.artifacts.put(content_key(spec), s.to_bytes())
    return {"artifact": content_key(spec), **s.summary}


def search_data(poison: dict | None, sanitize: dict | None, ctx: StageContext) -> ImageData:
    """What a search reads: the (possibly poisoned) set, sanitized if the search is defended; recomputed if
    an artifact was evicted or fails its check."""
    data = poisoned_data(poison, ctx)
    if sanitize is None:
        return data
    key, record = content_key(sanitize), record_of(ctx.store, sanitize)
    s = load_artifact(ctx.artifacts, key, Sanitized.from_bytes, record, ctx.log)
    if s is None:
        s = make_sanitized(sanitize, poison, ctx)
        recomputed(ctx.artifacts, key, s.to_bytes(), record, ctx.log)
    return s.apply(data)


STAGE = Stage("sanitize", VERSION, compute, ("poison",))
