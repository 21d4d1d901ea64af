"""Paper Table 2: the training-free metrics of random architectures on the clean set and on each attack's
poisoned set at one budget (the poisoning family's poisoned set: one cell, shared)."""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from naspoison import stages
from naspoison.analyses.sensitivity import SensitivityParams
from naspoison.attacks import ATTACKS, NO_ATTACK
from naspoison.families.base import (
    ExpandContext,
    Family,
    FamilyConfig,
    Step,
    Steps,
    Trial,
    check_fraction,
    unknown,
)
from naspoison.report import sensitivity


class MetricSensitivityConfig(FamilyConfig):
    """Paper Table 2: the training-free metrics of random architectures, clean vs each attack at one budget."""

    attacks: list[str] = Field(min_length=1)
    budget: float = 0.5
    poison_seed: int = Field(0, description="the poisoning family's seed shares its poisoned sets")


@dataclass(frozen=True)
class MetricsTrial(Trial):
    """The metrics of the analysis's architectures on the clean set (row none) or one attack's poisoned set."""

    poison: dict | None = field(default=None, repr=False)
    metrics: dict = field(default=None, repr=False)  # the metrics cell spec

    @property
    def label(self) -> str:
        return f"{self.family}/{self.row_label}"

    def steps(self) -> Steps:
        if self.poison is not None:
            yield Step(self.poison, self.dataset)
        yield Step(self.metrics, self.dataset, {"poison": self.poison})


class MetricSensitivity(Family):
    name = "metric_sensitivity"
    Config = MetricSensitivityConfig
    doc = MetricSensitivityConfig.__doc__
    profile_fields = {"sensitivity": (SensitivityParams, SensitivityParams)}
    section_tables = {"sensitivity": sensitivity.tables}

    def validate(self, config: MetricSensitivityConfig, suite) -> list:
        at, out = ("families", self.name), []
        for i, a in enumerate(config.attacks):
            if a not in ATTACKS:
                out.append((at + ("attacks", i), unknown("attack", a, ATTACKS)))
            elif ATTACKS[a].targets_algorithm:
                out.append((at + ("attacks", i), f"{a!r} makes one poisoned set per victim algorithm; the metrics "
                                                 "of random architectures have no victim"))
        return out + check_fraction(at + ("budget",), config.budget)

    def uses(self, config: MetricSensitivityConfig) -> tuple[set[str], set[str]]:
        return set(config.attacks), set()

    def expand(self, config: MetricSensitivityConfig, ctx: ExpandContext) -> list[MetricsTrial]:
        params = ctx.profile.sensitivity.model_dump()
        out = [MetricsTrial(self.name, NO_ATTACK, None, "metrics", 0, ctx.dataset,
                            metrics=stages.metrics_spec(params, ctx.dataset, None))]
        for attack in config.attacks:
            poison = stages.poison_spec(ctx.dataset, attack, config.budget, ctx.attack_params(attack),
                                        config.poison_seed)
            out.append(MetricsTrial(self.name, attack, config.budget, "metrics", 0, ctx.dataset, poison=poison,
                                    metrics=stages.metrics_spec(params, ctx.dataset, poison)))
        return out

    def collect(self, trial: MetricsTrial, cells):
        step, result = cells[-1]
        if result is not None and step.stage == "metrics":
            yield {"attack": trial.row, "budget": trial.budget, "result": result}

    def sections(self, collected) -> dict:
        rows = collected.of(self.name)
        return {"sensitivity": sensitivity.sensitivity_section(rows)} if rows else {}
