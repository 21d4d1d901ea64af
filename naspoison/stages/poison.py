"""``poison``: (dataset, attack, budget, attack params, seed) -> the poisoned training set, an artifact
(SPEC §3 step 1); a NAS-aware attack also names the victim it targets."""
from __future__ import annotations

import numpy as np

from naspoison.attacks import ATTACKS, AttackContext, Poison
from naspoison.data.datasets import ImageData, load_dataset
from naspoison.stages.artifacts_io import load_artifact, recomputed, record_of
from naspoison.stages.base import Stage, StageContext, _spec, added_later, dataset_identity
from naspoison.stages.victim import load_victim
from naspoison.store import content_key

VERSION = "2"


def poison_spec(dataset: dict, attack: str, budget: float, attack_params: dict, seed: int,
                victim: dict | None = None) -> dict:
    """``victim`` (NAS-aware attacks only, ``victim_spec``) names the clean search cells the attack's target
    comes from."""
    params = {"dataset": dataset_identity(dataset), "attack": attack, "budget": float(budget),
              "attack_params": attack_params, "seed": seed}
    return _spec("poison", VERSION, added_later(params, victim=victim), {})


def make_poison(spec: dict, ctx: StageContext) -> Poison:
    p = spec["params"]
    attack = ATTACKS[p["attack"]]()
    data = load_dataset(ctx.dataset)
    rng = np.random.default_rng([p["seed"], 0x9015])
    actx = AttackContext(ctx.artifacts, dataset_identity(ctx.dataset), log=ctx.log)
    if attack.targets_algorithm:
        if ctx.store is None:
            raise ValueError(f"{p['attack']} needs the result store to find its victim")
        actx.victim = load_victim(p["victim"], ctx)
    return attack.poison(data, p["budget"], attack.Params.model_validate(p["attack_params"]), rng, ctx.device, actx)


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    p = make_poison(spec, ctx)
    ctx.artifacts.put(content_key(spec), p.to_bytes())
    return {"artifact": content_key(spec), **p.summary}


def poisoned_data(poison: dict | None, ctx: StageContext) -> ImageData:
    """The (possibly poisoned) training set a search sees; recomputed if the artifact was evicted or fails its
    check against the poison record."""
    clean = load_dataset(ctx.dataset)
    if poison is None:
        return clean
    key, record = content_key(poison), record_of(ctx.store, poison)
    p = load_artifact(ctx.artifacts, key, Poison.from_bytes, record, ctx.log)
    if p is None:
        p = make_poison(poison, ctx)
        recomputed(ctx.artifacts, key, p.to_bytes(), record, ctx.log)
    return p.apply(clean)


STAGE = Stage("poison", VERSION, compute)
