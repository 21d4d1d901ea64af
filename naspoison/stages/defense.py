"""``defense``: a backdoor defense run on a backdoor cell's model (the generator is only used to score it)."""
from __future__ import annotations

import json

from naspoison._lazy import lazy
from naspoison.data.datasets import load_dataset
from naspoison.defenses import DEFENSES, Suspect
from naspoison.stages.backdoor import backdoor_models
from naspoison.stages.base import Stage, StageContext, _spec
from naspoison.store import content_key

torch = lazy("torch", globals())

VERSION = "3"


def defense_spec(defense: str, params: dict, backdoor: dict) -> dict:
    """A backdoor defense run on a backdoor cell's model (the generator is only used to score it)."""
    return _spec("defense", VERSION, {"defense": defense, "defense_params": params},
                 {"backdoor": content_key(backdoor)})


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    p, backdoor = spec["params"], inputs["backdoor"]
    defense = DEFENSES[p["defense"]]()
    model, gen = backdoor_models(backdoor, ctx)
    for q in gen.parameters():
        q.requires_grad_(False)
    suspect = Suspect(model, gen, load_dataset(ctx.dataset), backdoor["params"]["generator"]["target"],
                      torch.device(ctx.device))
    params = defense.Params.model_validate_json(json.dumps(p["defense_params"]))
    return {"defense": p["defense"], "arch": backdoor["params"]["arch"], **defense.run(suspect, params, ctx.log)}


STAGE = Stage("defense", VERSION, compute, ("backdoor",))
