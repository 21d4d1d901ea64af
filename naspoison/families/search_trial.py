"""The trial of every search-then-retrain family (poisoning, random baseline, OOD search, defended search):
(poison →) (sanitize →) search → train on clean data.

Its poison and search specs are known from the suite; its train spec only once the search has a genotype,
because identical genotypes with the same recipe and seed are trained once (the train key holds the
genotype, not the search key).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from naspoison import stages
from naspoison.families.base import Step, Steps, Trial
from naspoison.report.analysis import TrialAccuracy


@dataclass(frozen=True)
class SearchTrial(Trial):
    """A search (on poisoned, sanitized or out-of-distribution data, or clean) and the retraining of its find."""

    then = {"search": "train"}
    poison: dict | None = field(default=None, repr=False)    # poison cell spec; None: clean data
    search: dict = field(default=None, repr=False)          # search cell spec
    recipe: dict = field(default=None, repr=False)          # retraining recipe
    search_dataset: dict | None = field(default=None, repr=False)  # where the search reads, if not ``dataset``
    sanitize: dict | None = field(default=None, repr=False)        # a countermeasure applied before the search
    victims: tuple[Trial, ...] = field(default=(), repr=False)     # a NAS-aware attack's victim trials

    @property
    def requires(self) -> tuple[Trial, ...]:
        return self.victims

    @property
    def countermeasure(self) -> str | None:
        return None if self.sanitize is None else self.sanitize["params"]["defense"]

    @property
    def label(self) -> str:
        row = self.row_label if self.sanitize is None else f"{self.countermeasure}+{self.row_label}"
        return f"{self.family}/{row}/{self.algorithm}/seed={self.seed}"

    def steps(self) -> Steps:
        ds = self.dataset
        if self.poison is not None:
            yield Step(self.poison, ds)
        if self.sanitize is not None:
            yield Step(self.sanitize, ds, {"poison": self.poison})
        found = yield Step(self.search, self.search_dataset or ds, {"poison": self.poison, "sanitize": self.sanitize})
        if found is None:
            return
        yield Step(stages.train_spec(found["genotype"], self.recipe, ds, self.seed), ds)


def accuracy_rows(trial: SearchTrial, cells):
    """The trial's row of a Welch-tested accuracy table (poisoning, OOD search), once its train cell is stored."""
    acc = accuracy(cells)
    if acc is not None:
        yield TrialAccuracy(trial.row, trial.budget, trial.algorithm, trial.seed, acc)


def accuracy(cells) -> float | None:
    """The retrained network's test accuracy in percent, None while its train cell is missing."""
    step, result = cells[-1]
    return 100.0 * result["test_acc"] if result is not None and step.stage == "train" else None
