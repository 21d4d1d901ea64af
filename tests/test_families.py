"""The families registry: every family conforms to the Family protocol, expansion is the grid the suite
describes (counted here from the suite itself), every trial's cells come in dependency order, and a family
registered at run time is part of the suites read after it."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from naspoison.families import FAMILIES, Family, FamilyConfig, Step, Trial, register, walk
from naspoison.families.base import ExpandContext
from naspoison.store import content_key
from naspoison.suite import Suite, SuiteError
from naspoison.suite.expand import expand

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"poison", "sanitize", "search", "train", "metrics", "evas_search", "evas_score", "backdoor", "scenario",
          "defense"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_conforms(name):
    fam = FAMILIES[name]
    assert isinstance(fam, Family) and fam.name == name and fam.doc.strip()
    assert issubclass(fam.Config, FamilyConfig)
    with pytest.raises(ValidationError):  # a typo in a family block is an error, not ignored
        fam.Config.model_validate({"no_such_key": 1})
    for need in fam.needs:
        assert need in FAMILIES
    for block, (typ, factory) in fam.profile_fields.items():
        assert isinstance(factory(), typ if isinstance(typ, type) else dict), block


def test_every_trial_of_the_shipped_suite_walks_its_cells_in_dependency_order():
    """Walked with no results (a store with nothing in it): each step's inputs are specs of earlier steps of the
    same walk; every stage is a known one; a trial stops only where the next cell needs a missing result."""
    suite = Suite(ROOT / "suite.yaml")
    for profile in ("demo", "lab", "paper"):
        for t in expand(suite, profile).trials:
            assert isinstance(t, Trial)
            earlier: set[str] = set()
            for needed in t.requires:
                earlier |= {content_key(s.spec) for s, _ in walk(needed, lambda s: None)}
            cells = walk(t, lambda s: None)
            assert cells, t.label
            for step, _ in cells:
                assert isinstance(step, Step) and step.stage in STAGES, (t.label, step.stage)
                for upstream in step.inputs.values():
                    assert upstream is None or content_key(upstream) in earlier, (t.label, step.stage)
                earlier.add(content_key(step.spec))
            last = cells[-1][0].stage
            assert last in t.then or last not in ("search", "evas_search"), t.label


def test_the_poisoning_grid_is_the_product_of_its_lists_minus_what_it_skips():
    """Counted from the suite file itself: (1 no-attack + attacks × budgets) × algorithms × seeds, less the
    combinations the expansion says it skips (each skip names one attack@budget × algorithm)."""
    suite = Suite(ROOT / "suite.yaml")
    for profile in ("demo", "lab", "paper"):
        p = suite.model.families.poisoning
        seeds = suite.model.profiles[profile].seeds
        exp = expand(suite, profile)
        attacks = [a for a in p.attacks if a != "none"]
        skipped = [s for s in exp.skipped if "@" in s and "×" in s and "+" not in s.split(":")[0]]
        poisoning_skips = {s.split(":")[0] for s in skipped if s.split("@")[0] in attacks}
        expected = (len(p.algorithms) + len(attacks) * len(p.budgets) * len(p.algorithms) - len(poisoning_skips)) * seeds
        got = [t for t in exp.trials if t.family == "poisoning"]
        assert len(got) == expected, profile
        assert len({t.label for t in got}) == len(got)  # one trial per (row, budget, algorithm, seed)


@dataclass(frozen=True)
class _CountTrial(Trial):
    def steps(self):
        yield Step({"stage": "metrics", "version": "x", "params": {"n": self.seed}, "upstream": {}}, self.dataset)


class _CountConfig(FamilyConfig):
    copies: int = 2


class _Toy(Family):
    name = "toy_count"
    Config = _CountConfig
    doc = "A family made in a test."

    def expand(self, config, ctx: ExpandContext):
        return [_CountTrial(self.name, "none", None, "toy", s, ctx.dataset) for s in range(config.copies)]


def test_a_family_registered_at_run_time_is_part_of_the_suites_read_after(tmp_path):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("version: 1\nfamilies:\n  toy_count: {copies: 3}\nprofiles:\n  demo:\n    seeds: 1\n"
                          "    dataset: {name: digits}\n")
    with pytest.raises(SuiteError, match="unknown key"):  # not registered yet
        Suite(suite_file)
    register(_Toy())
    try:
        with pytest.raises(ValueError, match="already registered"):
            register(_Toy())
        trials = expand(Suite(suite_file), "demo").trials
        assert [t.seed for t in trials] == [0, 1, 2] and all(t.family == "toy_count" for t in trials)
        assert [s.spec["params"]["n"] for t in trials for s, _ in walk(t, lambda s: {})] == [0, 1, 2]
    finally:
        del FAMILIES["toy_count"]
    with pytest.raises(SuiteError, match="unknown key"):  # gone again: the schema follows the registry
        Suite(suite_file)


def test_a_family_block_typo_is_reported_with_a_suggestion(tmp_path):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("version: 1\nfamilies:\n  random_baseline: {algoritm: random}\nprofiles:\n  demo:\n"
                          "    seeds: 1\n    dataset: {name: digits}\n")
    with pytest.raises(SuiteError, match="did you mean 'algorithm'"):
        Suite(suite_file)


def test_only_accepts_row_as_the_name_of_what_attack_used_to_name():
    from naspoison.suite.expand import select

    suite = Suite(ROOT / "suite.yaml")
    trials = expand(suite, "demo").trials
    by_attack = select(trials, "attack=gaussian_noise,seed=0")
    assert by_attack and by_attack == select(trials, "row=gaussian_noise,seed=0")
    ood = [t for t in trials if t.family == "ood_search" and t.row != "none"]
    assert ood and all(t.search_dataset is not None for t in ood)  # an OOD row is a search source, not an attack
    assert list(itertools.chain(select(trials, "family=ood_search,row=" + ood[0].row))) == \
        [t for t in ood if t.row == ood[0].row]


def test_a_corrupt_record_counts_as_missing_when_walking_the_store(tmp_path):
    """SLURM's "already stored" and verify --recompute walk trials through the store: a damaged cell is one to
    compute again (verify names it), not a traceback."""
    from naspoison.families import walk_store
    from naspoison.run.executor import is_complete
    from naspoison.store import ResultStore

    trial = next(t for t in expand(Suite(ROOT / "suite.yaml"), "demo").trials if t.family == "random_baseline")
    store = ResultStore(tmp_path / "store")
    search = trial.search
    store.put(search, {"genotype": {"normal": [], "normal_concat": [], "reduce": [], "reduce_concat": []}}, {})
    path = next(store.iter_files())
    path.write_text(path.read_text().replace('"genotype"', '"genotypf"'))  # damaged after the digest was taken
    assert [r for _, r in walk_store(trial, store)] == [None]
    assert not is_complete(trial, store)


def test_two_families_writing_one_report_section_is_an_error():
    from naspoison.families import Collected
    from naspoison.report.assemble import assemble

    class Clash(_Toy):
        name = "clash"

        def sections(self, collected: Collected) -> dict:
            return {"rows": []}  # the poisoning table's key

    register(Clash())
    try:
        trial = expand(Suite(ROOT / "suite.yaml"), "demo").trials[0]

        class Empty:
            def get(self, stage, key):
                return None

        with pytest.raises(ValueError, match="clash writes report sections another family wrote"):
            assemble([trial], Empty())
    finally:
        del FAMILIES["clash"]


def test_an_ood_row_of_a_report_from_before_the_source_field_matches_its_new_form():
    from naspoison.report.compare import _row_id

    old = {"attack": "photo_patches", "budget": None, "algorithm": "tenas", "search_dataset": "photo_patches"}
    new = {"source": "photo_patches", "in_distribution": False, "budget": None, "algorithm": "tenas"}
    assert _row_id("ood", old) == _row_id("ood", new)
    assert _row_id("ood", {**new, "source": "mnist"}) != _row_id("ood", new)
