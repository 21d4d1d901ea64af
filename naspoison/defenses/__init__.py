"""Backdoor defenses, by name (Evas Tables 4-5). A new one is one file (a subclass of
:class:`BackdoorDefense`: ``name``, ``title``, ``Params``, ``run`` and ``summary``) plus one line here;
docs/extending.md walks through one.

Not the poisoning countermeasures of ``naspoison.sanitize``, which clean a search's data.
"""
from naspoison.defenses.base import BackdoorDefense, Suspect
from naspoison.defenses.fine_pruning import FinePruning
from naspoison.defenses.neural_cleanse import NeuralCleanse, anomaly_index, median
from naspoison.defenses.strip import Strip
from naspoison.registry import lookup

DEFENSES: dict[str, type[BackdoorDefense]] = {cls.name: cls for cls in (NeuralCleanse, Strip, FinePruning)}


def get(name: str) -> type[BackdoorDefense]:
    """The backdoor defense class called ``name``; a KeyError naming the nearest one otherwise."""
    return lookup(DEFENSES, name, "backdoor defense")


__all__ = ["DEFENSES", "BackdoorDefense", "Suspect", "anomaly_index", "get", "median"]
