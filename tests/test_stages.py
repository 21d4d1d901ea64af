"""The stage registry (issue 23): one ``Stage`` per stage, its version beside its spec builder, and the one
rule for fields added after a stage shipped, checked against the committed store and hand-written specs."""
import json
from collections import defaultdict

from conftest import REPO

from naspoison import stages
from naspoison.stages import STAGES, VERSIONS, added_later
from naspoison.store import content_key

DIGITS = {"name": "digits", "train_size": 200, "test_size": 100, "subset_seed": 0, "root": "/anywhere"}


def test_the_registry_matches_the_committed_store():
    """Every committed record was made by its stage's current version (no bump this refactor), and every
    upstream a stage's compute reads is named in that stage's keys."""
    assert set(STAGES) == set(VERSIONS) and all(s.name == n for n, s in STAGES.items())
    named = defaultdict(set)
    for f in (REPO / "cache").glob("*/*.json"):
        spec = json.loads(f.read_text())["spec"]
        assert spec["version"] == VERSIONS[spec["stage"]], f
        named[spec["stage"]] |= set(spec["upstream"])
    assert set(named) == set(STAGES)  # the demo store has cells of every stage
    for name, stage in STAGES.items():
        assert set(stage.inputs) <= named[name], name


def test_a_field_added_later_enters_the_key_only_when_set():
    assert added_later({"a": 1}, b=None) == {"a": 1}
    assert added_later({"a": 1}, b=0, c=[]) == {"a": 1, "b": 0, "c": []}  # set means not None
    # the specs as they were before sanitizers, resizing and NAS-aware victims existed, written by hand
    ident = {"name": "digits", "train_size": 200, "test_size": 100, "subset_seed": 0}
    poison = {"stage": "poison", "version": "2", "upstream": {},
              "params": {"dataset": ident, "attack": "random_label_flip", "budget": 0.1, "attack_params": {},
                         "seed": 0}}
    assert stages.poison_spec(DIGITS, "random_label_flip", 0.1, {}, 0) == poison
    search = {"stage": "search", "version": "3", "upstream": {"poison": content_key(poison)},
              "params": {"algorithm": "random", "algorithm_params": {}, "space": "darts", "dataset": ident,
                         "seed": 1}}
    assert stages.search_spec("random", {}, DIGITS, 1, poison) == search
    # set: in the key, and a different key
    victim = stages.victim_spec("tenas", {}, [(0, "k")], {})
    assert stages.poison_spec(DIGITS, "random_label_flip", 0.1, {}, 0, victim)["params"]["victim"] == victim
    sanitize = stages.sanitize_spec("cluster_relabel", {}, DIGITS, 0, poison)
    defended = stages.search_spec("random", {}, DIGITS, 1, poison, sanitize)
    assert defended["upstream"] == {"poison": content_key(poison), "sanitize": content_key(sanitize)}
    resized = stages.dataset_identity({**DIGITS, "resize": (8, 8, 3)})
    assert resized == {**ident, "resize": [8, 8, 3]} and stages.dataset_identity(DIGITS) == ident
