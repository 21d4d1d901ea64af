"""Paper Table 3: search on out-of-distribution datasets (the profile's ``ood``), each brought to the target
shape, retrain on the profile's dataset. The in-distribution row is the poisoning family's clean search
(one cell, shared)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydantic import Field

from naspoison import stages
from naspoison.data.datasets import DatasetSpec
from naspoison.families.base import ExpandContext, Family, FamilyConfig, check_datasets, check_names
from naspoison.families.poisoning import clean_trial
from naspoison.families.search_trial import SearchTrial, accuracy_rows
from naspoison.nas import ALGORITHMS
from naspoison.report import ood


class OodSearchConfig(FamilyConfig):
    """Paper Table 3: search on out-of-distribution datasets (the profile's ``ood``), retrain on the profile's."""

    algorithms: list[str] = Field(min_length=1)


class OodProfile(FamilyConfig):
    """The out-of-distribution search sources of a profile, brought to ``shape`` (the target's [H, W, C])."""

    datasets: list[DatasetSpec] = Field(default_factory=list)
    shape: list[int] | None = Field(None, min_length=3, max_length=3, description="[H, W, C] of the target images")


def source_name(ds) -> str:
    """A search source's row name: the dataset's name, or the file's stem for a user's .npz."""
    return Path(ds.path).stem if ds.name == "npz" and ds.path else ds.name


class OodSearch(Family):
    name = "ood_search"
    Config = OodSearchConfig
    doc = OodSearchConfig.__doc__
    profile_fields = {"ood": (OodProfile, OodProfile)}
    section_tables = {"ood": ood.tables}

    def validate(self, config: OodSearchConfig, suite) -> list:
        return check_names(("families", self.name, "algorithms"), config.algorithms, list(ALGORITHMS))

    def profile_datasets(self, profile) -> list:
        return [(("ood", "datasets", i), d) for i, d in enumerate(profile.ood.datasets)]

    def profile_problems(self, config: OodSearchConfig, name: str, profile) -> list:
        if config is None:  # the block is only read when the family is declared
            return []
        at = ("profiles", name)
        out = []
        if not profile.ood.datasets:
            out.append((at, "the ood_search family needs ood.datasets (the search sources) in every profile"))
        out += check_datasets(at, self.profile_datasets(profile))
        shape = profile.ood.shape
        if shape is not None and (min(shape[:2]) <= 0 or shape[2] not in (1, 3)):
            out.append((at + ("ood", "shape"), f"{shape}: need [H, W, C] with C 1 or 3"))
        return out

    def uses(self, config: OodSearchConfig) -> tuple[set[str], set[str]]:
        return set(), set(config.algorithms)

    def expand(self, config: OodSearchConfig, ctx: ExpandContext) -> list[SearchTrial]:
        sources, out = ctx.profile.ood, []
        for alg in config.algorithms:
            for seed in ctx.seeds:
                out.append(replace(clean_trial(ctx, alg, seed), family=self.name))
                for ds in sources.datasets:
                    sds = {**ds.model_dump(), "resize": sources.shape or ds.resize}
                    out.append(SearchTrial(self.name, source_name(ds), None, alg, seed, ctx.dataset,
                                           search=stages.search_spec(alg, ctx.algorithm_params(alg), sds, seed, None),
                                           recipe=ctx.recipe, search_dataset=sds))
        return out

    def collect(self, trial: SearchTrial, cells):
        return accuracy_rows(trial, cells)

    def sections(self, collected) -> dict:
        rows = collected.of(self.name)
        if not rows:
            return {}
        target = next(DatasetSpec.model_validate(t.dataset) for t in collected.trials if t.family == self.name)
        return {"ood": ood.ood_section(rows, collected.of("random_baseline"), source_name(target))}
