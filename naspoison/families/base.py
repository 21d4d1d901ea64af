"""What every suite family is made of (SPEC §5): a config under ``families:``, its validation, its expansion
into trials, the collection of their results and the report sections built from them.

A *trial* is one row of one table at one seed: a chain of pipeline cells. It says which cells through
:meth:`Trial.steps`, a generator that yields a :class:`Step` per cell and receives that cell's result back
(``None`` when a read-only walk finds the cell missing: code that needs the result then returns). One walk
(:func:`walk`) serves computing (the executor), collecting (the report), planning, checking and gc.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import ValidationError

from naspoison.attacks import ATTACKS
from naspoison.data.datasets import DATASETS
from naspoison.nas import ALGORITHMS
from naspoison.params import StrictParams
from naspoison.registry import did_you_mean
from naspoison.store import CorruptRecord, content_key
from naspoison.suite.yamlio import validation_problems

Problem = tuple[tuple, str]  # (location in the suite file, message)
# grid bounds: far above any real profile (the paper runs 10 seeds, 900 study cells), low enough that a typo
# (seeds: 1000000000) is an error instead of an expansion that never ends
MAX_SEEDS = 1000
MAX_COUNT = 100_000


class FamilyConfig(StrictParams):
    """A family's block in the suite file: strict types, no unknown keys."""


@dataclass(frozen=True)
class Step:
    """One cell of a trial: its spec (whose sha256 is the cell's key), the full dataset spec it loads (with the
    machine's root, which is not part of the key), and the upstream specs its stage reads, by name."""

    spec: dict
    dataset: dict
    inputs: dict[str, dict | None] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return self.spec["stage"]


Steps = Generator[Step, "dict | None", None]


@dataclass(frozen=True)
class Trial:
    """One row of a family's table at one seed. ``row`` names the row within its family (an attack, a search
    source, a scenario...); ``requires`` are trials whose cells this one reads (a NAS-aware attack's victim)."""

    family: str
    row: str
    budget: float | None
    algorithm: str
    seed: int
    dataset: dict = field(repr=False)  # the dataset the trial's final cells train and test on
    #: stage -> the stage of the cell that follows it and is known only once it has run (a plan counts those)
    then: ClassVar[dict[str, str]] = {}

    @property
    def requires(self) -> tuple[Trial, ...]:
        return ()

    def steps(self) -> Steps:  # pragma: no cover - every trial class defines it
        raise NotImplementedError

    @property
    def row_label(self) -> str:
        """The row and its budget, as labels and ``--only`` show them: ``gaussian_noise@0.1``."""
        return self.row if self.budget is None else f"{self.row}@{self.budget:g}"

    @property
    def label(self) -> str:
        return f"{self.family}/{self.row_label}/{self.algorithm}/seed={self.seed}"

    def fields(self) -> dict:
        """What ``--only`` filters on (``attack`` is the historical name of ``row`` and stays accepted)."""
        return {"family": self.family, "row": self.row, "attack": self.row, "budget": self.budget,
                "algorithm": self.algorithm, "seed": self.seed}


def walk(trial: Trial, result_of: Callable[[Step], dict | None]) -> list[tuple[Step, dict | None]]:
    """Every cell of ``trial`` with its result as ``result_of`` gives it (compute it, read it, or None). A step
    whose successors need its result ends the walk when that result is None."""
    out: list[tuple[Step, dict | None]] = []
    gen = trial.steps()
    try:
        step = next(gen)
        while True:
            result = result_of(step)
            out.append((step, result))
            step = gen.send(result)
    except StopIteration:
        pass
    return out


def requirements(trials: list[Trial]) -> list[Trial]:
    """The trials ``trials`` require (a NAS-aware attack's victims: the same clean trials for every budget and
    seed), each once."""
    return list({needed.label: needed for t in trials for needed in t.requires}.values())


def walk_store(trial: Trial, store) -> list[tuple[Step, dict | None]]:
    """``trial``'s cells with their stored results (None: not stored, or a corrupt record, which counts as
    missing here and which ``naspoison verify`` reports; the walk ends where a missing result is needed)."""

    def stored(step: Step) -> dict | None:
        try:
            rec = store.get(step.stage, content_key(step.spec))
        except CorruptRecord:
            return None
        return None if rec is None else rec.result

    return walk(trial, stored)


@dataclass
class ExpandContext:
    """What expanding a family needs from its profile: the validated profile, its dataset and recipe as key
    dicts, the seeds, the parameters of each named component, and where to record an excluded combination."""

    profile: Any
    dataset: dict
    recipe: dict
    seeds: range
    skipped: list[str]

    def algorithm_params(self, name: str) -> dict:
        return ALGORITHMS[name].Params.model_validate(self.profile.algorithms.get(name, {})).model_dump()

    def attack_params(self, name: str) -> dict:
        return ATTACKS[name].Params.model_validate(self.profile.attacks.get(name, {})).model_dump()

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)


@dataclass
class Collected:
    """What a read of the store found for a list of trials: each family's rows, and what is missing or corrupt."""

    trials: list[Trial]
    rows: dict[str, list] = field(default_factory=dict)   # family name -> the rows its collect() made
    missing: list[str] = field(default_factory=list)      # "stage key label"
    corrupt: list[str] = field(default_factory=list)
    checked: int = 0                                      # distinct cells read and verified
    keys: set[str] = field(default_factory=set)           # every cell key the trials reach

    def of(self, family: str) -> list:
        return self.rows.get(family, [])


class Family:
    """A suite family. Subclasses set ``name``, ``Config`` and ``doc`` and implement :meth:`expand`; the rest
    has defaults. One instance per family lives in :data:`naspoison.families.FAMILIES`."""

    name: ClassVar[str]
    Config: ClassVar[type[FamilyConfig]]
    doc: ClassVar[str] = ""
    #: blocks this family adds to every profile: field name -> (type, default factory)
    profile_fields: ClassVar[dict[str, tuple[Any, Callable[[], Any]]]] = {}
    #: other families a suite must declare with this one: name -> why
    needs: ClassVar[dict[str, str]] = {}

    def validate(self, config: FamilyConfig, suite: Any) -> list[Problem]:
        """Names, values and combinations pydantic cannot check; locations relative to the suite's top."""
        return []

    def profile_datasets(self, profile: Any) -> list[tuple[tuple, Any]]:
        """(location under the profile, DatasetSpec) of every dataset its profile blocks name: their paths are
        resolved against the suite file and a user's .npz is checked and content-hashed before anything runs."""
        return []

    def profile_problems(self, config: FamilyConfig | None, name: str, profile: Any) -> list[Problem]:
        """Problems of one profile's blocks this family reads (``config`` None: the suite does not declare the
        family; a block every profile has, such as ``evas``, is still checked)."""
        return []

    def uses(self, config: FamilyConfig) -> tuple[set[str], set[str]]:
        """(attacks, algorithms) this family's rows use: a profile may only set parameters of used ones."""
        return set(), set()

    def expand(self, config: FamilyConfig, ctx: ExpandContext) -> list[Trial]:  # pragma: no cover
        raise NotImplementedError

    def collect(self, trial: Trial, cells: list[tuple[Step, Any]]) -> Iterator[Any]:
        """The rows one trial gives its family's table, from its walked cells (results, None where missing)."""
        return iter(())

    def sections(self, collected: Collected) -> dict[str, dict]:
        """Report sections (JSON-able) this family contributes, from every family's collected rows."""
        return {}

    #: report section key -> the function turning that section's data into tables (naspoison.report.table)
    section_tables: ClassVar[dict[str, Callable[[dict], list]]] = {}

    def tables(self, report: dict) -> list:
        """The tables of this family's sections of ``report``, for every format (naspoison.report.render)."""
        return [t for key, fn in self.section_tables.items() if key in report for t in fn(report[key])]


def unknown(kind: str, name: str, known) -> str:
    """'unknown attack 'x'; did you mean 'y'?' — one wording for every registry name in a suite."""
    return f"unknown {kind} {name!r}{did_you_mean(name, known)}"


def check_datasets(at: tuple, located: list[tuple[tuple, Any]]) -> list[Problem]:
    """Every (location under ``at``, DatasetSpec) names a known dataset."""
    return [(at + loc + ("name",), unknown("dataset", ds.name, DATASETS)) for loc, ds in located
            if ds.name not in DATASETS]


def check_names(at: tuple, values: list[str], known, kind: str = "name") -> list[Problem]:
    """Every value of a list is a known name, listed once."""
    out, seen = [], set()
    for i, v in enumerate(values):
        if v not in known:
            out.append((at + (i,), unknown(kind, v, known)))
        if v in seen:
            out.append((at + (i,), f"{v!r} is listed twice"))
        seen.add(v)
    return out


def check_fraction(at: tuple, value: float, what: str = "budget") -> list[Problem]:
    return [] if 0 < value <= 1 else [(at, f"{what} {value} is outside (0, 1]: it is a fraction of the training set")]


def params_problems(at: tuple, model, params: dict) -> list[Problem]:
    """A component's parameters as a profile sets them, validated by its Params model."""
    try:
        model.model_validate(params)
    except ValidationError as e:
        return [(at + loc, msg) for loc, msg in validation_problems(e, model.model_fields)]
    return []
