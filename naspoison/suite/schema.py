"""The suite file's schema (SPEC §5): families fix the structure, profiles set the numbers.

Structure is checked by pydantic (strict types, no unknown keys); names, parameters and
combinations by :func:`_semantic_problems`. Every problem is reported with file, line and key.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from naspoison.analyses.sensitivity import SensitivityParams
from naspoison.attacks import ATTACKS, NO_ATTACK
from naspoison.backdoor.attack import GeneratorRecipe
from naspoison.backdoor.evaluate import ModelRecipe
from naspoison.backdoor.scenarios import SCENARIOS, FinetuneRecipe
from naspoison.data.datasets import DATASETS, DatasetSpec
from naspoison.nas import ALGORITHMS
from naspoison.nas.evas import EvasParams
from naspoison.suite.yamlio import YAML11_BOOLS, SuiteError, dotted, line_of, load_with_lines
from naspoison.train import Recipe

PROFILE_NAMES = ("paper", "lab", "demo")
SUITE_VERSION = 1
# grid bounds: far above any real profile (the paper runs 10 seeds, 900 study cells), low enough that a typo
# (seeds: 1000000000) is an error instead of an expansion that never ends
MAX_SEEDS = 1000
MAX_COUNT = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PoisoningFamily(_Strict):
    """Paper Table 1: attacks × budgets × algorithms × seeds, with a no-attack row."""

    attacks: list[str] = Field(min_length=1)
    budgets: list[float] = Field(min_length=1)
    algorithms: list[str] = Field(min_length=1)
    poison_seed: int = 0


class RandomBaselineFamily(_Strict):
    """Random genotypes from the same space and seeds, trained with the same recipe."""

    algorithm: str = "random"


class EvasSearchFamily(_Strict):
    """Evas search (aging evolution on the trigger-NTK score) on the profile's clean data."""

    search_seeds: int = Field(1, gt=0, le=MAX_SEEDS, description="independent searches; evas_eval evaluates seed 0's find")


class EvasEvalFamily(_Strict):
    """Evas Table 1: ACC and ASR of the found cell, fixed baselines and random NB201 cells."""

    baselines: list[str] = Field(default_factory=lambda: ["resnet18"])
    random_archs: int = Field(2, ge=0, le=MAX_COUNT)
    random_seed: int = 0
    scenarios: list[str] = Field(default_factory=list, description="Evas Tables 2-3 and Figure 6")
    poison_fractions: list[float] = Field(default_factory=lambda: [0.0001, 0.001, 0.01])
    landscape_edges: list[list[int]] = Field(default_factory=list, description="two (from, to) edges (Figure 5)")
    enumeration: bool = Field(False, description="conv1x1/conv3x3 on the found cell's conv edges (appendix A.3)")
    defenses: list[str] = Field(default_factory=list, description="backdoor defenses (Evas Tables 4-5)")


class MetricSensitivityFamily(_Strict):
    """Paper Table 2: the training-free metrics of random architectures, clean vs each attack at one budget."""

    attacks: list[str] = Field(min_length=1)
    budget: float = 0.5
    poison_seed: int = Field(0, description="the poisoning family's seed shares its poisoned sets")


class OodSearchFamily(_Strict):
    """Paper Table 3: search on out-of-distribution datasets (the profile's ``ood``), retrain on the profile's."""

    algorithms: list[str] = Field(min_length=1)


class OodProfile(_Strict):
    """The out-of-distribution search sources of a profile, brought to ``shape`` (the target's [H, W, C])."""

    datasets: list[DatasetSpec] = Field(default_factory=list)
    shape: list[int] | None = Field(None, min_length=3, max_length=3, description="[H, W, C] of the target images")


class DefendedSearchFamily(_Strict):
    """Paper Table 4: each countermeasure against the attacks it defends, at one budget, searched on."""

    algorithms: list[str] = Field(min_length=1)
    defenses: dict[str, list[str]] = Field(min_length=1, description="countermeasure -> the attacks it defends")
    budget: float = 0.5
    poison_seed: int = Field(0, description="the poisoning family's seed shares its poisoned sets")


class Families(_Strict):
    poisoning: PoisoningFamily | None = None
    random_baseline: RandomBaselineFamily | None = None
    metric_sensitivity: MetricSensitivityFamily | None = None
    ood_search: OodSearchFamily | None = None
    defended_search: DefendedSearchFamily | None = None
    evas_search: EvasSearchFamily | None = None
    evas_eval: EvasEvalFamily | None = None


class EvasProfile(_Strict):
    """The Evas numbers of a profile: search, the model recipe of every row, the generator."""

    seeds: int | None = Field(None, gt=0, le=MAX_SEEDS, description="training seeds of evas_eval (default: the profile's seeds)")
    search: EvasParams = Field(default_factory=EvasParams)
    model: ModelRecipe = Field(default_factory=ModelRecipe)
    generator: GeneratorRecipe = Field(default_factory=GeneratorRecipe)
    finetune: FinetuneRecipe = Field(default_factory=FinetuneRecipe)
    study_archs: int = Field(0, ge=0, le=MAX_COUNT, description="random cells scored and attacked for evas_eval's score study "
                                                  "(Evas Figure 2: 900)")
    defenses: dict[str, dict[str, Any]] = Field(default_factory=dict, description="defense parameters by name")
    datasets: list[DatasetSpec] | None = Field(None, description="evas_eval's datasets (default: the profile's); "
                                                                 "the search and the score study use the profile's")


class SlurmResources(_Strict):
    """Per job-array task of ``--executor slurm`` (command-line flags override these)."""
    partition: str | None = None
    time_min: int = Field(24 * 60, gt=0)
    gpus_per_task: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, gt=0)
    mem_gb: int = Field(64, gt=0)
    array_parallelism: int | None = Field(None, gt=0, description="tasks running at once (default: all)")
    additional: dict[str, str] = Field(default_factory=dict, description="extra sbatch options, e.g. {account: X}")


class Profile(_Strict):
    description: str = ""
    seeds: int = Field(gt=0, le=MAX_SEEDS, description="trials per cell: seeds 0..seeds-1")
    dataset: DatasetSpec
    train: Recipe = Field(default_factory=Recipe)
    attacks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    algorithms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    evas: EvasProfile = Field(default_factory=EvasProfile)
    slurm: SlurmResources = Field(default_factory=SlurmResources)
    sensitivity: SensitivityParams = Field(default_factory=SensitivityParams)
    ood: OodProfile = Field(default_factory=OodProfile)
    sanitize: dict[str, dict[str, Any]] = Field(default_factory=dict, description="countermeasure parameters by name")


class SuiteModel(_Strict):
    version: int = Field(description=f"the suite format; this naspoison reads version {SUITE_VERSION}")
    families: Families
    profiles: dict[str, Profile] = Field(min_length=1)


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for m in (SuiteModel, Families, PoisoningFamily, RandomBaselineFamily, MetricSensitivityFamily, SensitivityParams,
              OodSearchFamily, OodProfile, DefendedSearchFamily, EvasSearchFamily, EvasEvalFamily, Profile,
              DatasetSpec, Recipe, EvasProfile, SlurmResources, EvasParams, ModelRecipe, GeneratorRecipe, FinetuneRecipe):
        names |= set(m.model_fields)
    return names


def did_you_mean(name: str, options) -> str:
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(map(str, options)))}"


def _pydantic_problems(err: ValidationError) -> list[tuple[tuple, str]]:
    out = []
    known = _all_field_names()
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = f"unknown key{did_you_mean(loc[-1], known)}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"]
            val = e.get("input")
            if isinstance(val, str) and val in YAML11_BOOLS and "bool" in e["type"]:
                msg += f" (YAML 1.1 would read {val!r} as a boolean; write true or false)"
            elif isinstance(val, str) and e["type"] in ("float_type", "int_type", "float_parsing", "int_parsing"):
                msg += f" (got the string {val!r}; write a plain number, e.g. 0.01 or 1.0e-2)"
            elif val is not None and not isinstance(val, (dict, list)):
                msg += f" (got {val!r})"
        out.append((loc, msg))
    return out


def _semantic_problems(m: SuiteModel) -> list[tuple[tuple, str]]:
    out: list[tuple[tuple, str]] = []
    if m.version != SUITE_VERSION:
        out.append((("version",), f"suite version {m.version} is not known; this naspoison reads version {SUITE_VERSION}"))
    fam = m.families
    if not any(getattr(fam, f) for f in Families.model_fields):
        out.append((("families",), f"declares no family; add one of {', '.join(Families.model_fields)}"))
    if fam.evas_eval:
        from naspoison.backdoor.evaluate import RESNET18

        for i, b in enumerate(fam.evas_eval.baselines):
            if b != RESNET18:
                try:
                    from naspoison.spaces import nb201

                    nb201.parse(b)
                except ValueError as e:
                    out.append((("families", "evas_eval", "baselines", i),
                                f"a baseline is {RESNET18!r} or an NB201 arch string: {e}"))
        if fam.evas_search is None:
            out.append((("families", "evas_eval"), "needs the evas_search family: its first row is the found cell"))
        from naspoison.defenses import DEFENSES

        for i, d in enumerate(fam.evas_eval.defenses):
            if d not in DEFENSES:
                out.append((("families", "evas_eval", "defenses", i), f"unknown defense {d!r}{did_you_mean(d, DEFENSES)}"))
        for i, sc in enumerate(fam.evas_eval.scenarios):
            if sc not in SCENARIOS:
                out.append((("families", "evas_eval", "scenarios", i), f"unknown scenario {sc!r}{did_you_mean(sc, SCENARIOS)}"))
        if fam.evas_eval.landscape_edges:
            from naspoison.spaces import nb201

            edges = [tuple(x) for x in fam.evas_eval.landscape_edges]
            if len(edges) != 2 or any(x not in nb201.EDGES for x in edges) or edges[0] == edges[1]:
                out.append((("families", "evas_eval", "landscape_edges"),
                            f"needs two different NB201 edges [from, to] out of {[list(x) for x in nb201.EDGES]}"))
        for i, f in enumerate(fam.evas_eval.poison_fractions):
            if not 0 < f <= 1:
                out.append((("families", "evas_eval", "poison_fractions", i), f"fraction {f} is outside (0, 1]"))
    used_attacks: set[str] = set()
    used_algorithms: set[str] = set()
    if fam.poisoning:
        p = fam.poisoning
        at = ("families", "poisoning")
        for field, values, known in (("attacks", p.attacks, [NO_ATTACK, *ATTACKS]),
                                     ("algorithms", p.algorithms, list(ALGORITHMS))):
            seen = set()
            for i, v in enumerate(values):
                if v not in known:
                    out.append((at + (field, i), f"unknown name {v!r}{did_you_mean(v, known)}"))
                if v in seen:
                    out.append((at + (field, i), f"{v!r} is listed twice"))
                seen.add(v)
        if NO_ATTACK not in p.attacks:
            out.append((at + ("attacks",), f"needs the no-attack row {NO_ATTACK!r}: the test compares against it"))
        for i, b in enumerate(p.budgets):
            if not 0 < b <= 1:
                out.append((at + ("budgets", i), f"budget {b} is outside (0, 1]: it is a fraction of the training set"))
        if len(set(p.budgets)) != len(p.budgets):
            out.append((at + ("budgets",), "a budget is listed twice"))
        used_attacks = {a for a in p.attacks if a != NO_ATTACK}
        used_algorithms = set(p.algorithms)
    if fam.metric_sensitivity:
        ms, at = fam.metric_sensitivity, ("families", "metric_sensitivity")
        for i, a in enumerate(ms.attacks):
            if a not in ATTACKS:
                out.append((at + ("attacks", i), f"unknown attack {a!r}{did_you_mean(a, ATTACKS)}"))
            elif getattr(ATTACKS[a], "targets_algorithm", False):
                out.append((at + ("attacks", i), (f"{a!r} makes one poisoned set per victim algorithm; the metrics "
                                                  "of random architectures have no victim")))
            used_attacks.add(a)
        if not 0 < ms.budget <= 1:
            out.append((at + ("budget",), f"budget {ms.budget} is outside (0, 1]"))
    if fam.ood_search:
        for i, a in enumerate(fam.ood_search.algorithms):
            if a not in ALGORITHMS:
                out.append((("families", "ood_search", "algorithms", i), f"unknown name {a!r}{did_you_mean(a, ALGORITHMS)}"))
            used_algorithms.add(a)
        for pname, prof in m.profiles.items():
            if not prof.ood.datasets:
                out.append((("profiles", pname), ("the ood_search family needs ood.datasets (the search sources) "
                                                  "in every profile")))
            for i, ds in enumerate(prof.ood.datasets):
                if ds.name not in DATASETS:
                    out.append((("profiles", pname, "ood", "datasets", i, "name"),
                                f"unknown dataset {ds.name!r}{did_you_mean(ds.name, DATASETS)}"))
            shape = prof.ood.shape
            if shape is not None and (min(shape[:2]) <= 0 or shape[2] not in (1, 3)):
                out.append((("profiles", pname, "ood", "shape"), f"{shape}: need [H, W, C] with C 1 or 3"))
    if fam.defended_search:
        from naspoison.sanitize import SANITIZERS

        ds_, at = fam.defended_search, ("families", "defended_search")
        for i, a in enumerate(ds_.algorithms):
            if a not in ALGORITHMS:
                out.append((at + ("algorithms", i), f"unknown name {a!r}{did_you_mean(a, ALGORITHMS)}"))
            used_algorithms.add(a)
        for name, attacks in ds_.defenses.items():
            if name not in SANITIZERS:
                out.append((at + ("defenses", name), f"unknown countermeasure {name!r}{did_you_mean(name, SANITIZERS)}"))
            for i, a in enumerate(attacks):
                if a not in ATTACKS:
                    out.append((at + ("defenses", name, i), f"unknown attack {a!r}{did_you_mean(a, ATTACKS)}"))
                elif getattr(ATTACKS[a], "targets_algorithm", False):
                    out.append((at + ("defenses", name, i), f"{a!r} makes one poisoned set per victim; not supported here"))
                used_attacks.add(a)
        if not 0 < ds_.budget <= 1:
            out.append((at + ("budget",), f"budget {ds_.budget} is outside (0, 1]"))
        for pname, prof in m.profiles.items():
            for name, params in prof.sanitize.items():
                if name not in SANITIZERS:
                    out.append((("profiles", pname, "sanitize", name),
                                f"unknown countermeasure {name!r}{did_you_mean(name, SANITIZERS)}"))
                    continue
                try:
                    SANITIZERS[name].Params.model_validate(params)
                except ValidationError as e:
                    out += [(("profiles", pname, "sanitize", name) + loc, msg) for loc, msg in _pydantic_problems(e)]
    if fam.random_baseline:
        alg = fam.random_baseline.algorithm
        if alg not in ALGORITHMS:
            out.append((("families", "random_baseline", "algorithm"), f"unknown name {alg!r}{did_you_mean(alg, ALGORITHMS)}"))
        used_algorithms.add(alg)
    for pname, prof in m.profiles.items():
        at = ("profiles", pname)
        from naspoison.backdoor import VARIANTS

        for section in ("search", "generator"):
            v = getattr(prof.evas, section).variant
            if v not in VARIANTS:
                out.append((at + ("evas", section, "variant"), f"unknown trigger variant {v!r}{did_you_mean(v, VARIANTS)}"))
        from naspoison.defenses import DEFENSES

        for name, params in prof.evas.defenses.items():
            if name not in DEFENSES:
                out.append((at + ("evas", "defenses", name), f"unknown defense {name!r}{did_you_mean(name, DEFENSES)}"))
                continue
            try:
                DEFENSES[name].Params.model_validate(params)
            except ValidationError as e:
                out += [(at + ("evas", "defenses", name) + loc, msg) for loc, msg in _pydantic_problems(e)]
        for i, ds in enumerate(prof.evas.datasets or []):
            if ds.name not in DATASETS:
                out.append((at + ("evas", "datasets", i, "name"), f"unknown dataset {ds.name!r}{did_you_mean(ds.name, DATASETS)}"))
        s = prof.evas.search
        if s.sample_size > s.pool_size:
            out.append((at + ("evas", "search", "sample_size"), f"{s.sample_size} exceeds pool_size {s.pool_size}"))
        if prof.dataset.name not in DATASETS:
            out.append((at + ("dataset", "name"), f"unknown dataset {prof.dataset.name!r}{did_you_mean(prof.dataset.name, DATASETS)}"))
        if prof.dataset.name == "npz" and not prof.dataset.path:
            out.append((at + ("dataset", "path"), "dataset npz needs a path to a .npz file"))
        for section, registry, used in (("attacks", ATTACKS, used_attacks), ("algorithms", ALGORITHMS, used_algorithms)):
            for name, params in getattr(prof, section).items():
                if name not in registry:
                    out.append((at + (section, name), f"unknown name {name!r}{did_you_mean(name, registry)}"))
                    continue
                if name not in used:
                    out.append((at + (section, name), (f"{name!r} is not used by any family; a profile sets "
                                                       "numbers, it cannot add rows")))
                try:
                    registry[name].Params.model_validate(params)
                except ValidationError as e:
                    for loc, msg in _pydantic_problems(e):
                        out.append((at + (section, name) + loc, msg))
            for name in sorted(used - set(getattr(prof, section))):
                # a used name the profile leaves at its defaults: fine unless a value has no default
                if name not in registry:
                    continue
                try:
                    registry[name].Params.model_validate({})
                except ValidationError as e:
                    missing = [".".join(map(str, loc)) for loc, _ in _pydantic_problems(e)]
                    msg = (f"{section[:-1]} {name!r} is used but the profile does not set "
                           f"{', '.join(missing)} under {section}.{name}, which has no default")
                    out.append((at, msg))
    return out


class Suite:
    """A validated suite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        data, self.lines = load_with_lines(self.path)
        if not isinstance(data, dict):
            raise SuiteError([(str(self.path), 1, "", "the top level must be a mapping")])
        try:
            self.model = SuiteModel.model_validate(data)
        except ValidationError as e:
            self._raise(_pydantic_problems(e))
        problems = _semantic_problems(self.model)
        if problems:
            self._raise(problems)
        self._resolve_paths()
        self._checked: set[str] = set()

    def datasets_of(self, name: str) -> list[tuple[tuple, DatasetSpec]]:
        prof, at = self.model.profiles[name], ("profiles", name)
        out = [(at + ("dataset",), prof.dataset)]
        out += [(at + ("ood", "datasets", i), d) for i, d in enumerate(prof.ood.datasets)]
        out += [(at + ("evas", "datasets", i), d) for i, d in enumerate(prof.evas.datasets or [])]
        return out

    def _resolve_paths(self) -> None:
        """Dataset paths are relative to the suite file, not to wherever the command runs."""
        from naspoison.data.datasets import resolve_path

        for name in self.model.profiles:
            for _, ds in self.datasets_of(name):
                ds.path = resolve_path(ds.path, self.path.resolve().parent)

    def check_data(self, name: str) -> None:
        """A profile's .npz files, validated (and content-hashed for the keys) before anything runs."""
        from naspoison.data.datasets import npz_digest

        if name in self._checked:
            return
        problems = []
        for at, ds in self.datasets_of(name):
            if ds.name == "npz" and ds.path:
                try:
                    npz_digest(ds.path)
                except (OSError, ValueError) as e:
                    problems.append((at + ("path",), str(e)))
        if problems:
            self._raise(problems)
        self._checked.add(name)

    def _raise(self, problems: list[tuple[tuple, str]]):
        raise SuiteError([(str(self.path), line_of(self.lines, loc), dotted(loc), msg) for loc, msg in problems])

    def profile(self, name: str) -> Profile:
        if name not in self.model.profiles:
            raise SuiteError([(str(self.path), line_of(self.lines, ("profiles",)), "profiles",
                               f"no profile {name!r}{did_you_mean(name, self.model.profiles)}")])
        self.check_data(name)
        return self.model.profiles[name]
