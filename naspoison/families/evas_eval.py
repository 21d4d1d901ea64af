"""Evas Tables 1-5 and the score study: ACC and ASR of the found cell, fixed baselines and random NB201 cells,
under each victim scenario (Tables 2-3, Figure 6) and each backdoor defense (Tables 4-5); the score study
(Figure 2, Figure 5, appendix A.3) scores (and attacks) sampled, neighbouring and enumerated cells."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from naspoison import stages
from naspoison.attacks import NO_ATTACK
from naspoison.backdoor.evaluate import RESNET18
from naspoison.backdoor.scenarios import SCENARIOS
from naspoison.defenses import DEFENSES
from naspoison.families.base import (
    MAX_COUNT,
    ExpandContext,
    Family,
    FamilyConfig,
    Step,
    Steps,
    Trial,
    check_fraction,
    check_names,
)
from naspoison.families.evas_search import EvasTrial, seed_search_spec, trial_backdoor_spec
from naspoison.nas.evas import ScoreSetting, conv_enumeration, landscape_archs
from naspoison.spaces import nb201


class EvasEvalConfig(FamilyConfig):
    """Evas Table 1: ACC and ASR of the found cell, fixed baselines and random NB201 cells."""

    baselines: list[str] = Field(default_factory=lambda: ["resnet18"])
    random_archs: int = Field(2, ge=0, le=MAX_COUNT)
    random_seed: int = 0
    scenarios: list[str] = Field(default_factory=list, description="Evas Tables 2-3 and Figure 6")
    poison_fractions: list[float] = Field(default_factory=lambda: [0.0001, 0.001, 0.01])
    landscape_edges: list[list[int]] = Field(default_factory=list, description="two (from, to) edges (Figure 5)")
    enumeration: bool = Field(False, description="conv1x1/conv3x3 on the found cell's conv edges (appendix A.3)")
    defenses: list[str] = Field(default_factory=list, description="backdoor defenses (Evas Tables 4-5)")


@dataclass(frozen=True)
class ScoreStudyTrial(Trial):
    """One study of the score: ``sample`` (one random cell: its score and its attack), ``landscape`` (the scores
    of the found cell's neighbours on two edges) or ``enumeration`` (conv1x1/conv3x3 on its conv edges)."""

    then = {"evas_search": "evas_score"}

    study: str = "sample"
    search: dict | None = field(default=None, repr=False)
    arch: str | None = None
    score_setting: dict = field(default=None, repr=False)
    landscape_edges: tuple = ()
    recipe: dict = field(default=None, repr=False)     # how a studied cell is attacked (its backdoor cell)
    generator: dict = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.family}/study:{self.algorithm}"

    def _score(self, arch: str) -> Step:
        return Step(stages.evas_score_spec(arch, self.score_setting, self.dataset, 0), self.dataset)  # search seed 0's batch and inits

    def steps(self) -> Steps:
        if self.study == "sample":
            yield self._score(self.arch)
            yield Step(trial_backdoor_spec(self.arch, self), self.dataset)
            return
        found = yield Step(self.search, self.dataset)
        if found is None:
            return
        if self.study == "landscape":
            for a in landscape_archs(found["arch"], list(self.landscape_edges)):
                yield self._score(a)
            return
        for a in conv_enumeration(found["arch"]):
            yield self._score(a)
            yield Step(trial_backdoor_spec(a, self), self.dataset)


class EvasEvalFamily(Family):
    name = "evas_eval"
    Config = EvasEvalConfig
    doc = EvasEvalConfig.__doc__
    needs = {"evas_search": "its first row is the found cell"}

    def validate(self, config: EvasEvalConfig, suite) -> list:
        at, out = ("families", self.name), []
        for i, b in enumerate(config.baselines):
            if b != RESNET18:
                try:
                    nb201.parse(b)
                except ValueError as e:
                    out.append((at + ("baselines", i), f"a baseline is {RESNET18!r} or an NB201 arch string: {e}"))
        out += check_names(at + ("defenses",), config.defenses, DEFENSES, "defense")
        out += check_names(at + ("scenarios",), config.scenarios, SCENARIOS, "scenario")
        if config.landscape_edges:
            edges = [tuple(x) for x in config.landscape_edges]
            if len(edges) != 2 or any(x not in nb201.EDGES for x in edges) or edges[0] == edges[1]:
                out.append((at + ("landscape_edges",),
                            f"needs two different NB201 edges [from, to] out of {[list(x) for x in nb201.EDGES]}"))
        for i, f in enumerate(config.poison_fractions):
            out += check_fraction(at + ("poison_fractions", i), f, "fraction")
        return out

    def expand(self, config: EvasEvalConfig, ctx: ExpandContext) -> list[Trial]:
        ev, dataset = ctx.profile.evas, ctx.dataset
        found = seed_search_spec(ctx, 0)
        recipe, generator = ev.model.model_dump(), ev.generator.model_dump()
        rng = np.random.default_rng([config.random_seed, 0x201])
        rows = [("evas", found, None)] + [(b, None, b) for b in config.baselines]
        rows += [(f"random_{i + 1}", None, nb201.to_string(nb201.from_index(int(j))))
                 for i, j in enumerate(rng.integers(0, nb201.N_ARCHS, config.random_archs))]
        treatments = [(None, None)] + [(sc, f) for sc in config.scenarios
                                       for f in (config.poison_fractions if SCENARIOS[sc].needs_fraction else [None])]
        finetune = ev.finetune.model_dump()
        eval_sets = [d.model_dump() for d in ev.datasets] if ev.datasets else [dataset]
        seeds = range(ev.seeds or ctx.profile.seeds)

        def trial(ds, name, search, arch, seed, fraction=None, **kw) -> EvasTrial:
            return EvasTrial(self.name, kw.get("scenario") or kw.get("defense") or NO_ATTACK, fraction, name, seed, ds,
                             search=search, arch=arch, recipe=recipe, generator=generator,
                             search_dataset=dataset if search else None, **kw)

        out: list[Trial] = [trial(ds, name, search, arch, seed, scenario=scenario, fraction=fraction,
                                  finetune=finetune if scenario else None)
                            for ds in eval_sets for scenario, fraction in treatments
                            for name, search, arch in rows for seed in seeds]
        for ds in eval_sets:  # Evas Tables 4-5: defenses on the models as trained
            for defense in config.defenses:
                params = DEFENSES[defense].Params.model_validate(ev.defenses.get(defense, {})).model_dump()
                out += [trial(ds, name, search, arch, seed, defense=defense, defense_params=params)
                        for name, search, arch in rows for seed in seeds]
        # the score study (Evas Figure 2, Figure 5, appendix A.3): seed 0 only, like the paper's single runs
        setting = ev.search.model_dump(include=set(ScoreSetting.model_fields) - {"chunk"})
        def study(name, kind, **kw) -> ScoreStudyTrial:
            return ScoreStudyTrial(self.name, NO_ATTACK, None, name, 0, dataset, study=kind, score_setting=setting,
                                   recipe=recipe, generator=generator, **kw)

        draw = np.random.default_rng([config.random_seed, 0x57D])
        out += [study(f"sample_{i + 1}", "sample", arch=nb201.to_string(nb201.from_index(int(j))))
                for i, j in enumerate(draw.integers(0, nb201.N_ARCHS, ev.study_archs))]
        if config.landscape_edges:
            out.append(study("landscape", "landscape", search=found,
                             landscape_edges=tuple(tuple(x) for x in config.landscape_edges)))
        if config.enumeration:
            out.append(study("enumeration", "enumeration", search=found))
        return out

    def collect(self, trial, cells):
        """Tagged rows: ("row", ACC/ASR row), ("defense", defense row), ("study", (kind, studied cells))."""
        results = [r for _, r in cells]
        if isinstance(trial, ScoreStudyTrial):
            if results and all(r is not None for r in results):
                yield "study", (trial.study, study_rows(cells, trial))
            return
        step, last = cells[-1]
        if last is None or step.stage in ("evas_search",):
            return
        if trial.defense:
            yield "defense", {"row": trial.algorithm, "dataset": trial.dataset["name"], "seed": trial.seed,
                              "defense": trial.defense, "result": DEFENSES[trial.defense].summary(last)}
        else:
            yield "row", {"row": trial.algorithm, "seed": trial.seed, "arch": last["arch"],
                          "dataset": trial.dataset["name"], "scenario": trial.scenario, "fraction": trial.fraction,
                          "acc": last["acc"], "asr": last["asr"]}


def study_rows(cells, trial: ScoreStudyTrial) -> list[dict]:
    """Score cells, each followed by its backdoor cell where the study attacks too; ``found`` marks the
    search's own cell."""
    rows, found = [], None
    for step, r in cells:
        if step.stage == "evas_search":
            found = r
        elif step.stage == "evas_score":
            rows.append({"arch": r["arch"], "score": r["score"]})
        else:
            rows[-1].update(acc=r["acc"], asr=r["asr"])
    if found is not None:
        for row in rows:
            row["found"] = row["arch"] == found["arch"]
    return rows

