"""The suite families (SPEC §5), by the name they have under ``families:`` in a suite file. Each is one module
holding its config, validation, expansion into trials, collection and report sections; adding one is adding a
module and a line here (docs/extending.md)."""
from __future__ import annotations

from naspoison.families.base import (
    Collected,
    ExpandContext,
    Family,
    FamilyConfig,
    Step,
    Trial,
    requirements,
    walk,
    walk_store,
)
from naspoison.families.defended_search import DefendedSearch
from naspoison.families.evas_eval import EvasEvalFamily
from naspoison.families.evas_search import EvasSearchFamily
from naspoison.families.metric_sensitivity import MetricSensitivity
from naspoison.families.ood_search import OodSearch
from naspoison.families.poisoning import Poisoning
from naspoison.families.random_baseline import RandomBaseline
from naspoison.registry import lookup

# the papers' order: reports show their tables in it, trials are expanded (and ``--shard`` deals them out) in it
FAMILIES: dict[str, Family] = {f.name: f for f in (Poisoning(), RandomBaseline(), MetricSensitivity(), OodSearch(),
                                                   DefendedSearch(), EvasSearchFamily(), EvasEvalFamily())}


def register(family: Family) -> Family:
    """Add a family defined outside this package (suites read afterwards may declare it)."""
    if not isinstance(family, Family):
        raise TypeError(f"{family!r} is not a naspoison.families.Family")
    if family.name in FAMILIES:
        raise ValueError(f"a family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def get(name: str) -> Family:
    return lookup(FAMILIES, name, "family")


__all__ = ["FAMILIES", "Collected", "ExpandContext", "Family", "FamilyConfig", "Step", "Trial", "get", "register", "requirements", "walk",
           "walk_store"]
