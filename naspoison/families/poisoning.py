"""Paper Table 1: attacks × budgets × algorithms × seeds, with a no-attack row every poisoned row is tested
against (one-sided Welch, BH per algorithm); ΔImp against the random baseline."""
from __future__ import annotations

from pydantic import Field

from naspoison import stages
from naspoison.attacks import ATTACKS, NO_ATTACK
from naspoison.families.base import ExpandContext, Family, FamilyConfig, check_fraction, check_names
from naspoison.families.search_trial import SearchTrial, accuracy_rows
from naspoison.nas import ALGORITHMS
from naspoison.report import analysis
from naspoison.store import content_key


class PoisoningConfig(FamilyConfig):
    """Paper Table 1: attacks × budgets × algorithms × seeds, with a no-attack row."""

    attacks: list[str] = Field(min_length=1)
    budgets: list[float] = Field(min_length=1)
    algorithms: list[str] = Field(min_length=1)
    poison_seed: int = 0


def clean_trial(ctx: ExpandContext, algorithm: str, seed: int, family: str = "poisoning") -> SearchTrial:
    """The algorithm's search on clean data: the no-attack row (shared by every family that compares with it)."""
    return SearchTrial(family, NO_ATTACK, None, algorithm, seed, ctx.dataset,
                       search=stages.search_spec(algorithm, ctx.algorithm_params(algorithm), ctx.dataset, seed, None),
                       recipe=ctx.recipe)


class Poisoning(Family):
    name = "poisoning"
    Config = PoisoningConfig
    doc = PoisoningConfig.__doc__

    def validate(self, config: PoisoningConfig, suite) -> list:
        at = ("families", self.name)
        out = check_names(at + ("attacks",), config.attacks, [NO_ATTACK, *ATTACKS])
        out += check_names(at + ("algorithms",), config.algorithms, list(ALGORITHMS))
        if NO_ATTACK not in config.attacks:
            out.append((at + ("attacks",), f"needs the no-attack row {NO_ATTACK!r}: the test compares against it"))
        for i, b in enumerate(config.budgets):
            out += check_fraction(at + ("budgets", i), b)
        if len(set(config.budgets)) != len(config.budgets):
            out.append((at + ("budgets",), "a budget is listed twice"))
        return out

    def uses(self, config: PoisoningConfig) -> tuple[set[str], set[str]]:
        return {a for a in config.attacks if a != NO_ATTACK}, set(config.algorithms)

    def expand(self, config: PoisoningConfig, ctx: ExpandContext) -> list[SearchTrial]:
        out = []
        for attack in config.attacks:
            for budget in ([None] if attack == NO_ATTACK else config.budgets):
                if attack == NO_ATTACK:
                    out += [clean_trial(ctx, alg, seed) for alg in config.algorithms for seed in ctx.seeds]
                    continue
                att = ATTACKS[attack]
                shared = stages.poison_spec(ctx.dataset, attack, budget, ctx.attack_params(attack), config.poison_seed)
                for alg in config.algorithms:
                    a = ALGORITHMS[alg]
                    poison, victims = shared, ()
                    if att.targets_algorithm:
                        if not a.uses_data:
                            ctx.skip(f"{attack}@{budget:g} × {alg}: {alg} reads no data, so it has no architecture "
                                     "choice to target")
                            continue
                        # one poisoned set per victim algorithm, made from its best clean trial
                        victims = tuple(clean_trial(ctx, alg, s) for s in ctx.seeds)
                        victim = stages.victim_spec(alg, ctx.algorithm_params(alg),
                                             [(t.seed, content_key(t.search)) for t in victims], ctx.recipe)
                        # the victim's own GradPC radius, resolved here so the key holds what runs
                        params = att.params_for_victim(ctx.attack_params(attack), alg)
                        poison = stages.poison_spec(ctx.dataset, attack, budget, params, config.poison_seed, victim)
                    # an algorithm that reads images but not labels (TE-NAS) has no label-flip rows;
                    # a data-free one (random) keeps every row as a control that must equal no-attack
                    if att.changes == "labels" and a.uses_data and not a.uses_labels:
                        ctx.skip(f"{attack}@{budget:g} × {alg}: {alg} uses no labels")
                        continue
                    out += [SearchTrial(self.name, attack, budget, alg, seed, ctx.dataset, poison=poison,
                                        search=stages.search_spec(alg, ctx.algorithm_params(alg), ctx.dataset, seed,
                                                                  poison),
                                        recipe=ctx.recipe, victims=victims)
                            for seed in ctx.seeds]
        return out

    def collect(self, trial: SearchTrial, cells):
        return accuracy_rows(trial, cells)

    def sections(self, collected) -> dict:
        if not any(t.family in (self.name, "random_baseline") for t in collected.trials):
            return {}
        return analysis.analyse(collected.of(self.name), collected.of("random_baseline"))

    def tables(self, report: dict) -> list:
        # Table 1's data are report.json's top-level keys (its layout before families had sections); a suite
        # of analyses only has no rows
        return analysis.tables(report) if "algorithms" in report and report.get("rows") else []
