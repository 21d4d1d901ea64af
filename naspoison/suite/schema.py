"""The suite file's schema (SPEC §5): families fix the structure, profiles set the numbers.

Structure is checked by pydantic (strict types, no unknown keys); names, parameters and
combinations by :func:`_semantic_problems`. Every problem is reported with file, line and key.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, Field, ValidationError, create_model

from naspoison.attacks import ATTACKS
from naspoison.data.datasets import DatasetSpec
from naspoison.families import FAMILIES
from naspoison.families.base import MAX_SEEDS, check_datasets, params_problems
from naspoison.nas import ALGORITHMS
from naspoison.params import StrictParams
from naspoison.registry import did_you_mean
from naspoison.suite.yamlio import SuiteError, dotted, line_of, load_with_lines, validation_problems
from naspoison.train import Recipe

SUITE_VERSION = 1


class SlurmResources(StrictParams):
    """Per job-array task of ``--executor slurm`` (command-line flags override these)."""
    partition: str | None = None
    time_min: int = Field(24 * 60, gt=0)
    gpus_per_task: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, gt=0)
    mem_gb: int = Field(64, gt=0)
    array_parallelism: int | None = Field(None, gt=0, description="tasks running at once (default: all)")
    additional: dict[str, str] = Field(default_factory=dict, description="extra sbatch options, e.g. {account: X}")


class ProfileBase(StrictParams):
    """What every profile has; each family adds the blocks it reads (``Family.profile_fields``)."""

    description: str = ""
    seeds: int = Field(gt=0, le=MAX_SEEDS, description="trials per cell: seeds 0..seeds-1")
    dataset: DatasetSpec
    train: Recipe = Field(default_factory=Recipe)
    attacks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    algorithms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    slurm: SlurmResources = Field(default_factory=SlurmResources)


def suite_model() -> type[BaseModel]:
    """The suite file's pydantic model for the families registered now (built once per registry state, so a
    family registered at run time, ``naspoison.families.register``, is part of the suites read after it)."""
    return _suite_model(tuple(FAMILIES.items()))


@lru_cache(maxsize=4)
def _suite_model(families: tuple) -> type[BaseModel]:
    blocks: dict = {}
    for _, fam in families:
        for name, (typ, factory) in fam.profile_fields.items():
            if name in blocks or name in ProfileBase.model_fields:
                raise TypeError(f"family {fam.name} declares profile block {name!r} a second time")
            blocks[name] = (typ, Field(default_factory=factory))
    fams = create_model("Families", __base__=StrictParams, __doc__="The families a suite declares (naspoison.families).",
                        **{name: (fam.Config | None, None) for name, fam in families})
    profile = create_model("Profile", __base__=ProfileBase, __doc__=ProfileBase.__doc__, **blocks)
    return create_model("SuiteModel", __base__=StrictParams,
                        version=(int, Field(description=f"the suite format; this naspoison reads version {SUITE_VERSION}")),
                        families=(fams, ...), profiles=(dict[str, profile], Field(min_length=1)))


def _field_names(model: type[BaseModel], seen: set) -> set[str]:
    """Every key any block of a suite may hold, for 'did you mean' (walks the nested models)."""
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for f in model.model_fields.values():
        for arg in _types_in(f.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names |= _field_names(arg, seen)
    return names


def _types_in(annotation) -> list:
    args = get_args(annotation)
    return [annotation] if not args else [t for a in args for t in _types_in(a)]


def pydantic_problems(err: ValidationError) -> list[tuple[tuple, str]]:
    """Pydantic's errors in the suite's words; an unknown key suggests the nearest key of any block."""
    return validation_problems(err, _field_names(suite_model(), set()))


def _semantic_problems(m) -> list[tuple[tuple, str]]:
    """Every family's own checks, then what holds for every suite: its version, at least one family, and
    profiles that name known datasets and only set parameters of components some family uses."""
    out: list[tuple[tuple, str]] = []
    if m.version != SUITE_VERSION:
        out.append((("version",), f"suite version {m.version} is not known; this naspoison reads version {SUITE_VERSION}"))
    declared = {name: getattr(m.families, name) for name in FAMILIES if getattr(m.families, name) is not None}
    if not declared:
        out.append((("families",), f"declares no family; add one of {', '.join(FAMILIES)}"))
    used: tuple[set[str], set[str]] = (set(), set())
    for name, config in declared.items():
        fam = FAMILIES[name]
        out += fam.validate(config, m)
        out += [(("families", name), f"needs the {need} family: {why}") for need, why in fam.needs.items()
                if need not in declared]
        attacks, algorithms = fam.uses(config)
        used[0].update(attacks)
        used[1].update(algorithms)
    for pname, prof in m.profiles.items():
        for name, fam in FAMILIES.items():
            out += fam.profile_problems(declared.get(name), pname, prof)
        out += _profile_problems(pname, prof, *used)
    return out


def _profile_problems(pname: str, prof, used_attacks: set[str], used_algorithms: set[str]) -> list[tuple[tuple, str]]:
    at = ("profiles", pname)
    out = check_datasets(at, [(("dataset",), prof.dataset)])
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
            out += params_problems(at + (section, name), registry[name].Params, params)
        for name in sorted(used - set(getattr(prof, section))):
            # a used name the profile leaves at its defaults: fine unless a value has no default
            if name not in registry:
                continue
            try:
                registry[name].Params.model_validate({})
            except ValidationError as e:
                missing = [".".join(map(str, loc)) for loc, _ in pydantic_problems(e)]
                out.append((at, f"{section[:-1]} {name!r} is used but the profile does not set "
                                f"{', '.join(missing)} under {section}.{name}, which has no default"))
    return out


class Suite:
    """A validated suite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        data, self.lines = load_with_lines(self.path)
        if not isinstance(data, dict):
            raise SuiteError([(str(self.path), 1, "", "the top level must be a mapping")])
        try:
            self.model = suite_model().model_validate(data)
        except ValidationError as e:
            self._raise(pydantic_problems(e))
        problems = _semantic_problems(self.model)
        if problems:
            self._raise(problems)
        self._resolve_paths()
        self._checked: set[str] = set()

    def datasets_of(self, name: str) -> list[tuple[tuple, DatasetSpec]]:
        prof, at = self.model.profiles[name], ("profiles", name)
        return [(at + ("dataset",), prof.dataset)] + [(at + loc, d) for fam in FAMILIES.values()
                                                      for loc, d in fam.profile_datasets(prof)]

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

    def profile(self, name: str) -> ProfileBase:
        if name not in self.model.profiles:
            raise SuiteError([(str(self.path), line_of(self.lines, ("profiles",)), "profiles",
                               f"no profile {name!r}{did_you_mean(name, self.model.profiles)}")])
        self.check_data(name)
        return self.model.profiles[name]
