"""The pipeline's stages (SPEC §3): one module each, holding its version, its spec builder (the key schema)
and its ``compute(spec, inputs, ctx)`` side by side; ``STAGES`` is the registry the executor computes through.

``from naspoison import stages; stages.search_spec(...)`` builds keys; ``stages.STAGES[name].compute`` runs.
"""
from __future__ import annotations

from naspoison.stages import (
    backdoor,
    defense,
    evas_score,
    evas_search,
    metrics,
    poison,
    sanitize,
    scenario,
    search,
    train,
)
from naspoison.stages.backdoor import backdoor_spec
from naspoison.stages.base import Stage, StageContext, added_later, dataset_identity
from naspoison.stages.defense import defense_spec
from naspoison.stages.evas_score import evas_score_spec
from naspoison.stages.evas_search import evas_search_spec
from naspoison.stages.metrics import metrics_spec
from naspoison.stages.poison import poison_spec
from naspoison.stages.sanitize import sanitize_spec
from naspoison.stages.scenario import scenario_spec
from naspoison.stages.search import search_spec
from naspoison.stages.train import train_spec
from naspoison.stages.victim import victim_spec

STAGES: dict[str, Stage] = {m.STAGE.name: m.STAGE for m in (
    poison, sanitize, search, train, metrics, evas_search, evas_score, backdoor, scenario, defense)}
VERSIONS: dict[str, str] = {name: s.version for name, s in STAGES.items()}

__all__ = ["STAGES", "VERSIONS", "Stage", "StageContext", "added_later", "backdoor_spec", "dataset_identity",
           "defense_spec", "evas_score_spec", "evas_search_spec", "metrics_spec", "poison_spec", "sanitize_spec",
           "scenario_spec", "search_spec", "train_spec", "victim_spec"]
