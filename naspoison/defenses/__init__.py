"""Backdoor defenses, by name (Evas Tables 4-5). A defense is ``(suspect, params, log) -> dict`` with a
pydantic ``Params``; a new one is one file plus one line here."""
from naspoison.defenses.base import Suspect
from naspoison.defenses.fine_pruning import FinePruningParams, fine_pruning
from naspoison.defenses.neural_cleanse import (
            NeuralCleanseParams,
            anomaly_index,
            median,
            neural_cleanse,
)
from naspoison.defenses.strip import StripParams, strip

DEFENSES = {"neural_cleanse": (neural_cleanse, NeuralCleanseParams), "strip": (strip, StripParams),
            "fine_pruning": (fine_pruning, FinePruningParams)}

__all__ = ["DEFENSES", "Suspect", "anomaly_index", "median"]
