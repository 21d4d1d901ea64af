"""Paper Table 4: each countermeasure applied to the poisoned sets of the attacks it defends, then searched on;
each row tested against the same algorithm's undefended search on the same poisoned set."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from naspoison import stages
from naspoison.attacks import ATTACKS
from naspoison.families.base import (
    ExpandContext,
    Family,
    FamilyConfig,
    check_fraction,
    check_names,
    params_problems,
    unknown,
)
from naspoison.families.search_trial import SearchTrial, accuracy
from naspoison.nas import ALGORITHMS
from naspoison.report import defended
from naspoison.sanitize import SANITIZERS


class DefendedSearchConfig(FamilyConfig):
    """Paper Table 4: each countermeasure against the attacks it defends, at one budget, searched on."""

    algorithms: list[str] = Field(min_length=1)
    defenses: dict[str, list[str]] = Field(min_length=1, description="countermeasure -> the attacks it defends")
    budget: float = 0.5
    poison_seed: int = Field(0, description="the poisoning family's seed shares its poisoned sets")


class DefendedSearch(Family):
    name = "defended_search"
    Config = DefendedSearchConfig
    doc = DefendedSearchConfig.__doc__
    profile_fields = {"sanitize": (dict[str, dict[str, Any]], dict)}
    section_tables = {"defended": defended.tables}

    def validate(self, config: DefendedSearchConfig, suite) -> list:
        at = ("families", self.name)
        out = check_names(at + ("algorithms",), config.algorithms, list(ALGORITHMS))
        for name, attacks in config.defenses.items():
            if name not in SANITIZERS:
                out.append((at + ("defenses", name), unknown("countermeasure", name, SANITIZERS)))
            for i, a in enumerate(attacks):
                if a not in ATTACKS:
                    out.append((at + ("defenses", name, i), unknown("attack", a, ATTACKS)))
                elif ATTACKS[a].targets_algorithm:
                    out.append((at + ("defenses", name, i), f"{a!r} makes one poisoned set per victim; not supported here"))
        return out + check_fraction(at + ("budget",), config.budget)

    def profile_problems(self, config: DefendedSearchConfig, name: str, profile) -> list:
        if config is None:  # the block is only read when the family is declared
            return []
        out = []
        for countermeasure, params in profile.sanitize.items():
            at = ("profiles", name, "sanitize", countermeasure)
            if countermeasure not in SANITIZERS:
                out.append((at, unknown("countermeasure", countermeasure, SANITIZERS)))
                continue
            out += params_problems(at, SANITIZERS[countermeasure].Params, params)
        return out

    def uses(self, config: DefendedSearchConfig) -> tuple[set[str], set[str]]:
        return {a for attacks in config.defenses.values() for a in attacks}, set(config.algorithms)

    def expand(self, config: DefendedSearchConfig, ctx: ExpandContext) -> list[SearchTrial]:
        out = []
        for countermeasure, attacks in config.defenses.items():
            cls = SANITIZERS[countermeasure]
            params = cls.Params.model_validate(ctx.profile.sanitize.get(countermeasure, {}))
            why = cls.unavailable(params)
            if why:
                ctx.skip(f"{countermeasure}: {why}, so it has no rows")
                continue
            for attack in attacks:
                poison = stages.poison_spec(ctx.dataset, attack, config.budget, ctx.attack_params(attack),
                                            config.poison_seed)
                # relabeling reads no labels: after a label-only attack it sees the clean images, so every such
                # row shares one relabeled set and one search per algorithm and seed
                seen = None if cls.discards_labels and ATTACKS[attack].changes == "labels" else poison
                sspec = stages.sanitize_spec(countermeasure, params.model_dump(), ctx.dataset, config.poison_seed, seen)
                for alg in config.algorithms:
                    a = ALGORITHMS[alg]
                    if ATTACKS[attack].changes == "labels" and a.uses_data and not a.uses_labels:
                        ctx.skip(f"{countermeasure} × {attack} × {alg}: {alg} uses no labels")
                        continue
                    out += [SearchTrial(self.name, attack, config.budget, alg, seed, ctx.dataset, poison=seen,
                                        search=stages.search_spec(alg, ctx.algorithm_params(alg), ctx.dataset, seed,
                                                                  seen, sspec),
                                        recipe=ctx.recipe, sanitize=sspec)
                            for seed in ctx.seeds]
        return out

    def collect(self, trial: SearchTrial, cells):
        acc = accuracy(cells)
        if acc is not None:
            yield {"defense": trial.countermeasure, "attack": trial.row, "budget": trial.budget,
                   "algorithm": trial.algorithm, "seed": trial.seed, "accuracy": acc}

    def sections(self, collected) -> dict:
        rows = collected.of(self.name)
        if not rows:
            return {}
        return {"defended": defended.defended_section(rows, collected.of("poisoning"), collected.of("random_baseline"))}
