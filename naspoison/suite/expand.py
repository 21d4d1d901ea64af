"""Grid expansion: a profile of a suite becomes a list of trials (one chain of cells each).

A trial is poison → search → train. Its poison and search specs are fully known from the suite;
its train spec is known once the search has a genotype, because identical genotypes with the same
recipe and seed are trained once (the train key holds the genotype itself, not the search key).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

from naspoison.attacks import ATTACKS, NO_ATTACK
from naspoison.nas import ALGORITHMS
from naspoison.run import stages
from naspoison.run.victims import victim_spec
from naspoison.store import content_key
from naspoison.suite.schema import Suite


@dataclass(frozen=True)
class Trial:
    family: str
    attack: str
    budget: float | None
    algorithm: str
    seed: int
    poison: dict | None = field(repr=False)   # poison cell spec, None for clean data
    search: dict = field(repr=False)          # search cell spec
    dataset: dict = field(repr=False)         # full dataset spec (with root) for loading
    recipe: dict = field(repr=False)
    requires: tuple[Trial, ...] = field(default=(), repr=False)  # trials whose cells this one consumes
    search_dataset: dict | None = field(default=None, repr=False)  # where the search runs, if not ``dataset``
    sanitize: dict | None = field(default=None, repr=False)        # a countermeasure applied before the search

    @property
    def defense(self) -> str | None:
        return None if self.sanitize is None else self.sanitize["params"]["defense"]

    @property
    def label(self) -> str:
        row = self.attack if self.budget is None else f"{self.attack}@{self.budget:g}"
        row = row if self.sanitize is None else f"{self.defense}+{row}"
        return f"{self.family}/{row}/{self.algorithm}/seed={self.seed}"

    def train_spec(self, found: dict) -> dict:
        """The train cell, once the search has produced its result ``found`` (with the genotype)."""
        return stages.train_spec(found["genotype"], self.recipe, self.dataset, self.seed)

    def after_search(self, found: dict) -> list[dict]:
        return [self.train_spec(found)]

    def fields(self) -> dict:
        return {"family": self.family, "attack": self.attack, "budget": self.budget,
                "algorithm": self.algorithm, "seed": self.seed}


@dataclass(frozen=True)
class EvasTrial:
    """An Evas row: (optional) evas_search → backdoor. ``search`` is None for rows with a fixed
    architecture (ResNet-18, random cells); ``algorithm`` names the row (evas, resnet18, random_1, ...)."""

    family: str
    algorithm: str
    seed: int
    search: dict | None = field(repr=False)
    arch: str | None                         # fixed architecture; None: the search's find
    dataset: dict = field(repr=False)
    recipe: dict = field(repr=False)
    generator: dict = field(repr=False)
    scenario: str | None = None              # a victim's treatment of the model (backdoor.scenarios)
    fraction: float | None = None            # poisoned fraction (poisoned_finetune)
    finetune: dict | None = field(default=None, repr=False)
    study: str | None = None                 # score study: "sample", "landscape" or "enumeration"
    score_setting: dict | None = field(default=None, repr=False)
    landscape_edges: tuple = ()
    search_dataset: dict | None = field(default=None, repr=False)  # where the search ran (default: dataset)
    defense: str | None = None               # a backdoor defense run on the model (defenses registry)
    defense_params: dict | None = field(default=None, repr=False)
    poison: None = None
    requires: tuple = ()
    SCENARIO_SEED_OFFSET = 10_000  # fine-tuning / re-initialisation seed = training seed + this

    @property
    def attack(self) -> str:  # --only attack=retrain, attack=strip etc.
        return self.scenario or self.defense or NO_ATTACK

    @property
    def budget(self) -> float | None:
        return self.fraction

    @property
    def label(self) -> str:
        if self.study:
            return f"{self.family}/study:{self.algorithm}"
        elsewhere = self.search_dataset is not None and self.search_dataset["name"] != self.dataset["name"]
        where = f"{self.dataset['name']}:" if elsewhere else ""
        row = "" if self.scenario is None else f"/{self.scenario}" + ("" if self.fraction is None else f"@{self.fraction:g}")
        row += "" if self.defense is None else f"/{self.defense}"
        return f"{self.family}/{where}{self.algorithm}{row}/seed={self.seed}"

    def _backdoor(self, arch: str) -> dict:
        return stages.backdoor_spec(arch, self.recipe, self.generator, self.dataset, self.seed,
                                    None if self.search is None else content_key(self.search))

    def _score(self, arch: str) -> dict:
        return stages.evas_score_spec(arch, self.score_setting, self.dataset, 0)  # search seed 0's batch and inits

    def after_search(self, found: dict | None) -> list[dict]:
        """The cells after the search: the backdoor cell, then the scenario cell if any; for the score study,
        score cells (and backdoor cells) of the studied architectures."""
        from naspoison.nas.evas import conv_enumeration, landscape_archs

        if self.study == "sample":
            return [self._score(self.arch), self._backdoor(self.arch)]
        if self.study == "landscape":
            return [self._score(a) for a in landscape_archs(found["arch"], list(self.landscape_edges))]
        if self.study == "enumeration":
            return [spec for a in conv_enumeration(found["arch"]) for spec in (self._score(a), self._backdoor(a))]
        backdoor = self.train_spec(found)
        if self.defense is not None:
            return [backdoor, stages.defense_spec(self.defense, self.defense_params, backdoor)]
        if self.scenario is None:
            return [backdoor]
        return [backdoor, stages.scenario_spec(self.scenario, self.fraction, self.finetune,
                                               self.seed + self.SCENARIO_SEED_OFFSET, backdoor)]

    def train_spec(self, found: dict | None) -> dict:
        """The backdoor cell, once the architecture is known (``found``: the search's result)."""
        arch = self.arch if self.search is None else found["arch"]
        return stages.backdoor_spec(arch, self.recipe, self.generator, self.dataset, self.seed,
                                    None if self.search is None else content_key(self.search))

    def fields(self) -> dict:
        return {"family": self.family, "attack": self.attack, "budget": self.budget,
                "algorithm": self.algorithm, "seed": self.seed}


def source_name(ds) -> str:
    """A search source's row name: the dataset's name, or the file's stem for a user's .npz."""
    from pathlib import Path

    return Path(ds.path).stem if ds.name == "npz" and ds.path else ds.name


@dataclass(frozen=True)
class SensitivityTrial:
    """A metric-sensitivity cell (the poisoning paper's Table 2): the training-free metrics of the
    analysis's random architectures on the clean set (attack none) or one attack's poisoned set."""

    family: str
    attack: str
    budget: float | None
    poison: dict | None = field(repr=False)
    cell: dict = field(repr=False)
    dataset: dict = field(repr=False)
    algorithm: str = "metrics"
    seed: int = 0
    search: None = None
    requires: tuple = ()

    @property
    def label(self) -> str:
        row = self.attack if self.budget is None else f"{self.attack}@{self.budget:g}"
        return f"{self.family}/{row}"

    def after_search(self, found: None) -> list[dict]:
        return [self.cell]

    def fields(self) -> dict:
        return {"family": self.family, "attack": self.attack, "budget": self.budget,
                "algorithm": self.algorithm, "seed": self.seed}


def expand_sensitivity(fam, prof, dataset: dict, att_params) -> list[SensitivityTrial]:
    f = fam.metric_sensitivity
    if f is None:
        return []
    params = prof.sensitivity.model_dump()
    out = [SensitivityTrial("metric_sensitivity", NO_ATTACK, None, None, stages.metrics_spec(params, dataset, None),
                            dataset)]
    for attack in f.attacks:
        # the same poisoned set as the poisoning family's row at this budget (one cell, shared)
        poison = stages.poison_spec(dataset, attack, f.budget, att_params(attack), f.poison_seed)
        out.append(SensitivityTrial("metric_sensitivity", attack, f.budget, poison,
                                    stages.metrics_spec(params, dataset, poison), dataset))
    return out


def expand_defended(f, prof, dataset: dict, recipe: dict, seeds, alg_params, att_params, skipped: list[str]) -> list[Trial]:
    """Paper Table 4: each countermeasure applied to the poisoned sets of the attacks it defends, then searched on."""
    from naspoison.sanitize import SANITIZERS

    out = []
    for defense, attacks in f.defenses.items():
        cls = SANITIZERS[defense]
        params = cls.Params.model_validate(prof.sanitize.get(defense, {}))
        if defense == "diffusion_denoise" and params.model is None:
            skipped.append(f"{defense}: this profile names no denoiser model (sanitize.{defense}.model), so it has "
                           "no rows")
            continue
        for attack in attacks:
            poison = stages.poison_spec(dataset, attack, f.budget, att_params(attack), f.poison_seed)
            # relabeling reads no labels: after a label-only attack it sees the clean images, so every such row
            # shares one relabeled set and one search per algorithm and seed
            seen = None if cls.discards_labels and ATTACKS[attack].changes == "labels" else poison
            sspec = stages.sanitize_spec(defense, params.model_dump(), dataset, f.poison_seed, seen)
            for alg in f.algorithms:
                a = ALGORITHMS[alg]
                if ATTACKS[attack].changes == "labels" and a.uses_data and not a.uses_labels:
                    skipped.append(f"{defense} × {attack} × {alg}: {alg} uses no labels")
                    continue
                for seed in seeds:
                    out.append(Trial("defended_search", attack, f.budget, alg, seed, seen,
                                     stages.search_spec(alg, alg_params(alg), dataset, seed, seen, sspec),
                                     dataset, recipe, sanitize=sspec))
    return out


def expand_evas(fam, prof, dataset: dict) -> list[EvasTrial]:
    import numpy as np

    from naspoison.backdoor.scenarios import SCENARIOS
    from naspoison.nas.evas import ScoreSetting
    from naspoison.spaces import nb201

    ev = prof.evas
    search_params, recipe, generator = ev.search.model_dump(), ev.model.model_dump(), ev.generator.model_dump()
    out: list[EvasTrial] = []
    searches = []
    if fam.evas_search:
        searches = [stages.evas_search_spec(search_params, dataset, s) for s in range(fam.evas_search.search_seeds)]
        # the found cell of every search seed, trained and attacked with that seed (seed 0: shared with evas_eval)
        out += [EvasTrial("evas_search", "evas", s, spec, None, dataset, recipe, generator)
                for s, spec in enumerate(searches)]
    if fam.evas_eval:
        e = fam.evas_eval
        rng = np.random.default_rng([e.random_seed, 0x201])
        rows = [("evas", searches[0], None)] + [(b, None, b) for b in e.baselines]
        rows += [(f"random_{i + 1}", None, nb201.to_string(nb201.from_index(int(j))))
                 for i, j in enumerate(rng.integers(0, nb201.N_ARCHS, e.random_archs))]
        treatments = [(None, None)] + [(sc, f) for sc in e.scenarios
                                       for f in (e.poison_fractions if SCENARIOS[sc].needs_fraction else [None])]
        finetune = ev.finetune.model_dump()
        eval_sets = [d.model_dump() for d in ev.datasets] if ev.datasets else [dataset]
        for ds in eval_sets:
            for scenario, fraction in treatments:
                for name, search, arch in rows:
                    for seed in range(ev.seeds or prof.seeds):
                        out.append(EvasTrial("evas_eval", name, seed, search, arch, ds, recipe, generator,
                                             scenario, fraction, finetune if scenario else None,
                                             search_dataset=dataset if search else None))
        from naspoison.defenses import DEFENSES

        for ds in eval_sets:  # Evas Tables 4-5: defenses on the models as trained
            for defense in e.defenses:
                params = DEFENSES[defense].Params.model_validate(ev.defenses.get(defense, {})).model_dump()
                for name, search, arch in rows:
                    for seed in range(ev.seeds or prof.seeds):
                        out.append(EvasTrial("evas_eval", name, seed, search, arch, ds, recipe, generator,
                                             search_dataset=dataset if search else None, defense=defense,
                                             defense_params=params))
        # the score study (Evas Figure 2, Figure 5, appendix A.3): seed 0 only, like the paper's single runs
        setting = ev.search.model_dump(include=set(ScoreSetting.model_fields) - {"chunk"})
        study = np.random.default_rng([e.random_seed, 0x57D])
        for i, j in enumerate(study.integers(0, nb201.N_ARCHS, ev.study_archs)):
            out.append(EvasTrial("evas_eval", f"sample_{i + 1}", 0, None, nb201.to_string(nb201.from_index(int(j))),
                                 dataset, recipe, generator, study="sample", score_setting=setting))
        if e.landscape_edges:
            out.append(EvasTrial("evas_eval", "landscape", 0, searches[0], None, dataset, recipe, generator,
                                 study="landscape", score_setting=setting,
                                 landscape_edges=tuple(tuple(x) for x in e.landscape_edges)))
        if e.enumeration:
            out.append(EvasTrial("evas_eval", "enumeration", 0, searches[0], None, dataset, recipe, generator,
                                 study="enumeration", score_setting=setting))
    return out


@dataclass
class Expansion:
    trials: list[Trial | EvasTrial]
    skipped: list[str]  # combinations the structure rules out, with the reason


def expand(suite: Suite, profile_name: str) -> Expansion:
    prof = suite.profile(profile_name)
    fam = suite.model.families
    dataset = prof.dataset.model_dump()
    recipe = prof.train.model_dump()
    seeds = range(prof.seeds)

    def alg_params(name: str) -> dict:
        return ALGORITHMS[name].Params.model_validate(prof.algorithms.get(name, {})).model_dump()

    def att_params(name: str) -> dict:
        return ATTACKS[name].Params.model_validate(prof.attacks.get(name, {})).model_dump()

    trials: list[Trial] = []
    skipped: list[str] = []
    def clean_trial(alg: str, seed: int) -> Trial:
        return Trial("poisoning", NO_ATTACK, None, alg, seed, None,
                     stages.search_spec(alg, alg_params(alg), dataset, seed, None), dataset, recipe)

    if fam.poisoning:
        p = fam.poisoning
        for attack in p.attacks:
            for budget in ([None] if attack == NO_ATTACK else p.budgets):
                shared = None if attack == NO_ATTACK else stages.poison_spec(
                    dataset, attack, budget, att_params(attack), p.poison_seed)
                for alg in p.algorithms:
                    cls = ALGORITHMS[alg]
                    poison, requires = shared, ()
                    if poison and getattr(ATTACKS[attack], "targets_algorithm", False):
                        if not cls.uses_data:
                            skipped.append(f"{attack}@{budget:g} × {alg}: {alg} reads no data, so it has no "
                                           "architecture choice to target")
                            continue
                        # one poisoned set per victim algorithm, made from its best clean trial
                        requires = tuple(clean_trial(alg, s) for s in seeds)
                        victim = victim_spec(alg, alg_params(alg), [(t.seed, content_key(t.search)) for t in requires],
                                             recipe)
                        # the victim's own GradPC radius, resolved here so the key holds what runs
                        vparams = ATTACKS[attack].params_for_victim(att_params(attack), alg)
                        poison = stages.poison_spec(dataset, attack, budget, vparams, p.poison_seed, victim)
                    # an algorithm that reads images but not labels (TE-NAS) has no label-flip rows;
                    # a data-free one (random) keeps every row as a control that must equal no-attack
                    if poison and ATTACKS[attack].changes == "labels" and cls.uses_data and not cls.uses_labels:
                        skipped.append(f"{attack}@{budget:g} × {alg}: {alg} uses no labels")
                        continue
                    for seed in seeds:
                        trials.append(Trial("poisoning", attack, budget, alg, seed, poison,
                                            stages.search_spec(alg, alg_params(alg), dataset, seed, poison),
                                            dataset, recipe, requires))
    if fam.random_baseline:
        alg = fam.random_baseline.algorithm
        for seed in seeds:
            trials.append(Trial("random_baseline", NO_ATTACK, None, alg, seed, None,
                                stages.search_spec(alg, alg_params(alg), dataset, seed, None), dataset, recipe))
    if fam.ood_search:
        # paper Table 3: search on each out-of-distribution set brought to the target shape, retrain on the
        # profile's dataset; the in-distribution row is the poisoning family's clean search (one cell, shared)
        for alg in fam.ood_search.algorithms:
            for seed in seeds:
                trials.append(replace(clean_trial(alg, seed), family="ood_search"))
                for ds in prof.ood.datasets:
                    sds = {**ds.model_dump(), "resize": prof.ood.shape or ds.resize}
                    trials.append(Trial("ood_search", source_name(ds), None, alg, seed, None,
                                        stages.search_spec(alg, alg_params(alg), sds, seed, None), dataset, recipe,
                                        search_dataset=sds))
    if fam.defended_search:
        trials += expand_defended(fam.defended_search, prof, dataset, recipe, seeds, alg_params, att_params, skipped)
    trials += expand_sensitivity(fam, prof, dataset, att_params)
    trials += expand_evas(fam, prof, dataset)
    return Expansion(trials, sorted(set(skipped)))


def select(trials: list[Trial], only: str | None) -> list[Trial]:
    """Filter by ``--only``: comma-separated ``field=pattern`` terms (all must hold), each pattern a
    shell glob, alternatives with ``|``; fields: family, attack, budget, algorithm, seed.
    Example: ``--only 'attack=gaussian_noise|none,seed=0'``."""
    if not only:
        return trials
    terms = []
    for term in only.split(","):
        if "=" not in term:
            raise ValueError(f"--only term {term!r} is not field=pattern")
        k, v = (s.strip() for s in term.split("=", 1))
        if k not in ("family", "attack", "budget", "algorithm", "seed"):
            raise ValueError(f"--only field {k!r} unknown; use family, attack, budget, algorithm or seed")
        terms.append((k, v.split("|")))

    return [t for t in trials
            if all(any(fnmatch.fnmatchcase(_fmt(t.fields()[k]), pat) for pat in pats) for k, pats in terms)]


def _fmt(v) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def nearest_values(trials: list[Trial], only: str) -> str:
    """Why ``--only`` selects nothing: per term that matches no trial, the closest values that exist."""
    import difflib

    out = []
    for term in only.split(","):
        k, v = (s.strip() for s in term.split("=", 1))
        pats = v.split("|")
        values = sorted({_fmt(t.fields()[k]) for t in trials} - {""}, key=lambda s: (len(s), s))
        if any(fnmatch.fnmatchcase(x, pat) for x in values for pat in pats):
            continue
        close = sorted({c for pat in pats for c in difflib.get_close_matches(pat, values, n=3, cutoff=0.5)})
        shown = ", ".join(values[:12]) + (" …" if len(values) > 12 else "")
        out.append(f"{k}={v} matches nothing" + (f"; nearest: {', '.join(close)}" if close else "")
                   + f" ({k} values: {shown})")
    return ("; " + "; ".join(out)) if out else "; each term matches some trials, but no trial matches all of them"


def shard(trials: list[Trial], spec: str | None) -> list[Trial]:
    """``--shard i/N``: every N-th trial from the i-th (0-based), so shards are balanced and disjoint."""
    if not spec:
        return trials
    try:
        i, n = (int(s) for s in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r} must be i/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {spec!r}: need 0 <= i < N")
    return trials[i::n]
