"""``scenario``: a victim's treatment of a backdoor cell's model (fine-tuning, re-initialisation...), the
trigger generator fixed."""
from __future__ import annotations

from naspoison.backdoor.attack import GeneratorRecipe
from naspoison.backdoor.evaluate import ModelRecipe
from naspoison.backdoor.scenarios import FinetuneRecipe, run_scenario
from naspoison.data.datasets import load_dataset
from naspoison.stages.backdoor import backdoor_models
from naspoison.stages.base import Stage, StageContext, _spec
from naspoison.store import content_key

VERSION = "2"


def scenario_spec(scenario: str, fraction: float | None, finetune: dict, seed: int, backdoor: dict) -> dict:
    """A victim's treatment of a backdoor cell's model, the generator fixed (``seed``: its fine-tuning or
    re-initialisation seed)."""
    return _spec("scenario", VERSION, {"scenario": scenario, "fraction": fraction, "finetune": finetune,
                                       "seed": seed}, {"backdoor": content_key(backdoor)})


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    p, backdoor = spec["params"], inputs["backdoor"]
    b = backdoor["params"]
    model, gen = backdoor_models(backdoor, ctx)
    return run_scenario(p["scenario"], model, gen, load_dataset(ctx.dataset), ModelRecipe.model_validate(b["recipe"]),
                        FinetuneRecipe.model_validate(p["finetune"]), GeneratorRecipe.model_validate(b["generator"]),
                        b["arch"], p["seed"], p["fraction"], ctx.device, ctx.log)


STAGE = Stage("scenario", VERSION, compute, ("backdoor",))
