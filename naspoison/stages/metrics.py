"""``metrics``: training-free metrics of the metric-sensitivity architectures on a clean or poisoned
training set."""
from __future__ import annotations

import json

from naspoison.analyses.sensitivity import SensitivityParams, metric_values
from naspoison.stages.base import Stage, StageContext, _spec, dataset_identity, key_of
from naspoison.stages.poison import poisoned_data

VERSION = "2"


def metrics_spec(params: dict, dataset: dict, poison: dict | None) -> dict:
    """Training-free metrics of the metric-sensitivity architectures on a clean or poisoned training set."""
    return _spec("metrics", VERSION, {"analysis_params": params, "dataset": dataset_identity(dataset)},
                 {"poison": key_of(poison)})


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    params = SensitivityParams.model_validate_json(json.dumps(spec["params"]["analysis_params"]))
    return metric_values(poisoned_data(inputs["poison"], ctx), params, ctx.device, ctx.log)


STAGE = Stage("metrics", VERSION, compute, ("poison",))
