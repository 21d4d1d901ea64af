"""Random genotypes from the same space and seeds, trained with the same recipe: the baseline of every ΔImp."""
from __future__ import annotations

from naspoison.families.base import ExpandContext, Family, FamilyConfig, unknown
from naspoison.families.poisoning import clean_trial
from naspoison.families.search_trial import SearchTrial, accuracy
from naspoison.nas import ALGORITHMS


class RandomBaselineConfig(FamilyConfig):
    """Random genotypes from the same space and seeds, trained with the same recipe."""

    algorithm: str = "random"


class RandomBaseline(Family):
    name = "random_baseline"
    Config = RandomBaselineConfig
    doc = RandomBaselineConfig.__doc__

    def validate(self, config: RandomBaselineConfig, suite) -> list:
        if config.algorithm not in ALGORITHMS:
            return [(("families", self.name, "algorithm"), unknown("name", config.algorithm, ALGORITHMS))]
        return []

    def uses(self, config: RandomBaselineConfig) -> tuple[set[str], set[str]]:
        return set(), {config.algorithm}

    def expand(self, config: RandomBaselineConfig, ctx: ExpandContext) -> list[SearchTrial]:
        return [clean_trial(ctx, config.algorithm, seed, self.name) for seed in ctx.seeds]

    def collect(self, trial: SearchTrial, cells):
        acc = accuracy(cells)
        if acc is not None:
            yield acc
