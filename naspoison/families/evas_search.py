"""Evas search (Evas §3.4): aging evolution on the trigger-NTK score over NB201 on the profile's clean data;
the found cell of every search seed is trained and attacked with that seed (seed 0 is shared with evas_eval).
Also the trial of every Evas row: (search →) backdoor (→ a victim's scenario, or a backdoor defense)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from naspoison import stages
from naspoison.attacks import NO_ATTACK
from naspoison.backdoor import VARIANTS
from naspoison.backdoor.attack import GeneratorRecipe
from naspoison.backdoor.evaluate import ModelRecipe
from naspoison.backdoor.scenarios import FinetuneRecipe
from naspoison.data.datasets import DatasetSpec
from naspoison.defenses import DEFENSES
from naspoison.families.base import (
    MAX_COUNT,
    MAX_SEEDS,
    ExpandContext,
    Family,
    FamilyConfig,
    Step,
    Steps,
    Trial,
    check_datasets,
    params_problems,
    unknown,
)
from naspoison.nas.evas import EvasParams
from naspoison.report import evas
from naspoison.store import content_key


class EvasSearchConfig(FamilyConfig):
    """Evas search (aging evolution on the trigger-NTK score) on the profile's clean data."""

    search_seeds: int = Field(1, gt=0, le=MAX_SEEDS, description="independent searches; evas_eval evaluates seed 0's find")


class EvasProfile(FamilyConfig):
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


@dataclass(frozen=True)
class EvasTrial(Trial):
    """An Evas row at one seed. ``search`` is None for a fixed architecture ``arch`` (ResNet-18, random cells);
    ``algorithm`` names the row (evas, resnet18, random_1, ...). A ``scenario`` (a victim's treatment of the
    model, ``fraction`` poisoned) or a backdoor ``defense`` may follow the backdoor cell."""

    then = {"evas_search": "backdoor"}

    search: dict | None = field(default=None, repr=False)
    arch: str | None = None
    recipe: dict = field(default=None, repr=False)
    generator: dict = field(default=None, repr=False)
    scenario: str | None = None
    finetune: dict | None = field(default=None, repr=False)
    search_dataset: dict | None = field(default=None, repr=False)  # where the search ran (default: dataset)
    defense: str | None = None
    defense_params: dict | None = field(default=None, repr=False)
    SCENARIO_SEED_OFFSET = 10_000  # fine-tuning / re-initialisation seed = training seed + this

    @property
    def fraction(self) -> float | None:
        return self.budget

    @property
    def label(self) -> str:
        elsewhere = self.search_dataset is not None and self.search_dataset["name"] != self.dataset["name"]
        where = f"{self.dataset['name']}:" if elsewhere else ""
        row = "" if self.scenario is None else f"/{self.scenario}" + ("" if self.fraction is None else f"@{self.fraction:g}")
        row += "" if self.defense is None else f"/{self.defense}"
        return f"{self.family}/{where}{self.algorithm}{row}/seed={self.seed}"

    def steps(self) -> Steps:
        arch = self.arch
        if self.search is not None:
            found = yield Step(self.search, self.search_dataset or self.dataset)
            if found is None:
                return
            arch = found["arch"]
        backdoor = trial_backdoor_spec(arch, self)
        yield Step(backdoor, self.dataset)
        if self.defense is not None:
            yield Step(stages.defense_spec(self.defense, self.defense_params, backdoor), self.dataset,
                       {"backdoor": backdoor})
        elif self.scenario is not None:
            yield Step(stages.scenario_spec(self.scenario, self.fraction, self.finetune,
                                            self.seed + self.SCENARIO_SEED_OFFSET, backdoor),
                       self.dataset, {"backdoor": backdoor})


class EvasSearchFamily(Family):
    name = "evas_search"
    Config = EvasSearchConfig
    doc = EvasSearchConfig.__doc__
    profile_fields = {"evas": (EvasProfile, EvasProfile)}
    section_tables = {"evas": evas.tables}

    def profile_datasets(self, profile) -> list:
        return [(("evas", "datasets", i), d) for i, d in enumerate(profile.evas.datasets or [])]

    def profile_problems(self, config: EvasSearchConfig, name: str, profile) -> list:
        return evas_profile_problems(name, profile) + check_datasets(("profiles", name), self.profile_datasets(profile))

    def expand(self, config: EvasSearchConfig, ctx: ExpandContext) -> list[EvasTrial]:
        return [EvasTrial(self.name, NO_ATTACK, None, "evas", s, ctx.dataset, search=spec,
                          recipe=ctx.profile.evas.model.model_dump(), generator=ctx.profile.evas.generator.model_dump())
                for s, spec in enumerate(seed_search_spec(ctx, s) for s in range(config.search_seeds))]

    def collect(self, trial: EvasTrial, cells):
        step, found = cells[0]
        if found is not None:
            yield {"seed": trial.seed, "arch": found["arch"], "score": found["score"],
                   "visited": len(found["history"]), "distinct_archs": found["distinct_archs"]}

    def sections(self, collected) -> dict:
        """The Evas tables (Evas Tables 1-5, the score study) from this family's searches and evas_eval's rows."""
        found, rows = collected.of(self.name), collected.of("evas_eval")
        if not found and not rows:
            return {}
        kinds: dict[str, list] = {"row": [], "study": [], "defense": []}
        study: dict[str, list[dict]] = {}
        for kind, row in rows:
            if kind == "study":
                study.setdefault(row[0], []).extend(row[1])
            else:
                kinds[kind].append(row)
        return {"evas": evas.evas_table(kinds["row"], found, study, kinds["defense"])}


def seed_search_spec(ctx: ExpandContext, seed: int) -> dict:
    """The Evas search cell of one search seed (evas_eval reads seed 0's)."""
    return stages.evas_search_spec(ctx.profile.evas.search.model_dump(), ctx.dataset, seed)


def trial_backdoor_spec(arch: str, trial) -> dict:
    """The backdoor cell of ``arch`` for an Evas trial (its recipe, generator, dataset and seed): trained clean,
    then its trigger generator; a cell found by a search also names that search."""
    return stages.backdoor_spec(arch, trial.recipe, trial.generator, trial.dataset, trial.seed,
                                None if trial.search is None else content_key(trial.search))


def evas_profile_problems(name: str, profile) -> list:
    """A profile's evas block: trigger variants, defense parameters, search sizes (its datasets: check_datasets)."""
    at, out, ev = ("profiles", name, "evas"), [], profile.evas
    for section in ("search", "generator"):
        v = getattr(ev, section).variant
        if v not in VARIANTS:
            out.append((at + (section, "variant"), unknown("trigger variant", v, VARIANTS)))
    for d, params in ev.defenses.items():
        if d not in DEFENSES:
            out.append((at + ("defenses", d), unknown("defense", d, DEFENSES)))
            continue
        out += params_problems(at + ("defenses", d), DEFENSES[d].Params, params)
    if ev.search.sample_size > ev.search.pool_size:
        out.append((at + ("search", "sample_size"), f"{ev.search.sample_size} exceeds pool_size {ev.search.pool_size}"))
    return out
