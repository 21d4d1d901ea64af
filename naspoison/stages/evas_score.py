"""``evas_score``: one architecture's Evas score (the score studies and the fixed-architecture rows)."""
from __future__ import annotations

from naspoison.data.datasets import load_dataset
from naspoison.nas.evas import Scorer, ScoreSetting
from naspoison.spaces import nb201
from naspoison.stages.base import Stage, StageContext, _spec, dataset_identity

VERSION = "2"


def evas_score_spec(arch: str, setting: dict, dataset: dict, seed: int) -> dict:
    """One architecture's Evas score with the score batch and init seeds of search seed ``seed``."""
    return _spec("evas_score", VERSION, {"arch": arch, "setting": setting, "dataset": dataset_identity(dataset),
                                         "seed": seed}, {})


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    p = spec["params"]
    scorer = Scorer(load_dataset(ctx.dataset), ScoreSetting.model_validate(p["setting"]), p["seed"],
                    dataset_identity(ctx.dataset), ctx.artifacts, ctx.device)
    return {"arch": p["arch"], **scorer(nb201.parse(p["arch"]))}


STAGE = Stage("evas_score", VERSION, compute)
