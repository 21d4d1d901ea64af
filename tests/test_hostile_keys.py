"""Issue 24's "wrong result accepted as valid" cases: each must make the old result unusable or be detected."""
import os

import numpy as np
import pytest

from naspoison import stages
from naspoison.data import datasets
from naspoison.run.cell import run_stage
from naspoison.stages import StageContext
from naspoison.stages.poison import make_poison, poisoned_data
from naspoison.store import content_key
from naspoison.suite import Suite
from naspoison.suite.expand import expand

SUITE = """\
version: 1
families:
  poisoning: {{attacks: [none], budgets: [0.5], algorithms: [random]}}
profiles:
  demo:
    seeds: 1
    dataset: {{name: npz, path: {path}}}
"""


def write_npz(path, seed: int, n=40, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
    y = np.arange(n) % classes
    np.savez(path, x_train=x[: n // 2], y_train=y[: n // 2], x_test=x[n // 2:], y_test=y[n // 2:])


def search_key(suite_path) -> str:
    (t,) = expand(Suite(suite_path), "demo").trials
    return content_key(t.search)


def test_replacing_an_npz_in_place_changes_every_key(tmp_path):
    """Before: the key held the path only, so new content at the same path reused the old results."""
    data = tmp_path / "mine.npz"
    write_npz(data, 0)
    (tmp_path / "s.yaml").write_text(SUITE.format(path=data))
    before = search_key(tmp_path / "s.yaml")
    write_npz(data, 1)
    os.utime(data, ns=(1, 1))  # even with another mtime trick the size+mtime memo must not hide new content
    after = search_key(tmp_path / "s.yaml")
    assert before != after
    # the same arrays under another name and folder are the same data: same key
    (tmp_path / "elsewhere").mkdir()
    write_npz(tmp_path / "elsewhere" / "copy.npz", 1)
    (tmp_path / "t.yaml").write_text(SUITE.format(path=tmp_path / "elsewhere" / "copy.npz"))
    assert search_key(tmp_path / "t.yaml") == after


def test_relative_dataset_paths_resolve_against_the_suite_file(tmp_path, monkeypatch):
    """Before: relative to the working directory, so the same suite read two different files."""
    (tmp_path / "proj" / "data").mkdir(parents=True)
    write_npz(tmp_path / "proj" / "data" / "d.npz", 0)
    (tmp_path / "proj" / "s.yaml").write_text(SUITE.format(path="data/d.npz"))
    (tmp_path / "data").mkdir()
    write_npz(tmp_path / "data" / "d.npz", 7)  # a decoy where the working directory would resolve it
    monkeypatch.chdir(tmp_path)
    suite = Suite("proj/s.yaml")
    assert suite.profile("demo").dataset.path == str((tmp_path / "proj" / "data" / "d.npz").resolve())
    expected = datasets.arrays_digest(*datasets._read_npz(tmp_path / "proj" / "data" / "d.npz"))
    (t,) = expand(suite, "demo").trials
    assert t.search["params"]["dataset"]["sha256"] == expected
    assert "path" not in t.search["params"]["dataset"]  # where a file lives is not what it holds


def test_builtin_keys_are_unchanged_and_their_content_is_pinned(monkeypatch):
    """digits is keyed by name (the committed demo store depends on it); that is sound only for fixed content,
    so the loader checks the loaded arrays against a constant and refuses other content."""
    assert stages.dataset_identity({"name": "digits", "train_size": None, "test_size": None, "subset_seed": 0,
                                    "root": "x", "download": False, "path": None, "resize": None}) == {
        "name": "digits", "train_size": None, "test_size": None, "subset_seed": 0}
    data = datasets._digits(datasets.DatasetSpec(name="digits"))
    assert data.x_train.shape == (1437, 8, 8, 1)  # the stratified 80/20 split of 1,797 images
    monkeypatch.setitem(datasets.BUILTIN_DIGESTS, "digits", "0" * 64)
    with pytest.raises(RuntimeError, match="differs from the one its cells were keyed on"):
        datasets._digits(datasets.DatasetSpec(name="digits"))


# ----------------------------------------------------------------------------- digests (issue 24, case 2)
def _one_record(tmp_path):
    import json

    from naspoison.store import ResultStore

    store = ResultStore(tmp_path / "store")
    rec = store.put({"stage": "train", "version": "1", "params": {"seed": 0}, "upstream": {}}, {"test_acc": 0.5},
                    {"device": "cpu", "host": "a"})
    path = store.path("train", rec.key)
    return store, path, json.loads(path.read_text())


def test_provenance_is_covered_by_the_record_digest(tmp_path):
    """Before: only the result was hashed; provenance could be edited freely and still verify."""
    import json

    from naspoison.store import CorruptRecord, ResultStore

    store, path, raw = _one_record(tmp_path)
    assert ResultStore.load_file(path).provenance_covered
    raw["provenance"]["host"] = "somewhere-else"
    path.write_text(json.dumps(raw))
    with pytest.raises(CorruptRecord, match="record digest"):
        ResultStore.load_file(path)


def test_a_result_edit_with_a_recomputed_result_digest_is_still_caught(tmp_path):
    import json

    from naspoison.store import CorruptRecord, ResultStore
    from naspoison.store.results import _digest

    store, path, raw = _one_record(tmp_path)
    raw["result"]["test_acc"] = 0.99
    raw["result_digest"] = _digest(raw["result"])  # careless: fixed one digest, not the other
    path.write_text(json.dumps(raw))
    with pytest.raises(CorruptRecord, match="record digest"):
        ResultStore.load_file(path)


def test_records_written_before_record_digests_still_verify_and_are_counted(tmp_path, capsys):
    import json

    from naspoison.cli import main
    from naspoison.store import ResultStore

    store, path, raw = _one_record(tmp_path)
    del raw["record_digest"]
    path.write_text(json.dumps(raw))
    rec = ResultStore.load_file(path)
    assert rec.result == {"test_acc": 0.5} and not rec.provenance_covered
    assert main(["verify", "--store", str(tmp_path / "store")]) == 0
    assert "1 written before record digests" in capsys.readouterr().out


# ----------------------------------------------------------------------------- artifacts (issue 24, case 3)
@pytest.fixture
def poison_cell(tmp_path):
    from naspoison.attacks import ATTACKS
    from naspoison.store import ArtifactCache, ResultStore

    dataset = datasets.DatasetSpec(name="digits", train_size=200, test_size=50).model_dump()
    params = ATTACKS["random_label_flip"].Params().model_dump()
    spec = stages.poison_spec(dataset, "random_label_flip", 0.2, params, 0)
    other = stages.poison_spec(dataset, "random_label_flip", 0.2, params, 1)
    store, art = ResultStore(tmp_path / "store"), ArtifactCache(tmp_path / "art")
    run_stage(store, spec, lambda d: stages.STAGES["poison"].compute(spec, {}, StageContext(dataset, art, d, store)), "cpu")
    truth = make_poison(spec, StageContext(dataset)).apply(datasets.load_dataset(dataset))
    yield dataset, spec, other, store, art, truth
    art.close()


def test_a_replaced_artifact_is_detected_evicted_and_recomputed(poison_cell):
    """Before: a different but valid poisoned set under the key was used silently by the search."""
    dataset, spec, other, store, art, truth = poison_cell
    key = content_key(spec)
    assert store.get("poison", key).provenance["artifacts"][key] == datasets.hashlib.sha256(
        make_poison(spec, StageContext(dataset)).to_bytes()).hexdigest()
    wrong = make_poison(other, StageContext(dataset)).to_bytes()  # valid, but another seed's flips
    art.put(key, wrong)
    logs = []
    got = poisoned_data(spec, StageContext(dataset, art, "cpu", store, logs.append))
    assert np.array_equal(got.y_train, truth.y_train)
    assert any("is not the artifact its record was made with" in m and "evicted" in m for m in logs)
    assert art.get(key) == make_poison(spec, StageContext(dataset)).to_bytes()  # the recomputation replaced it


@pytest.mark.parametrize("framed", [True, False])
def test_a_truncated_artifact_is_detected_evicted_and_recomputed(poison_cell, framed):
    """Before: BadZipFile in every search that read it, forever. ``framed``: written with its own digest (now)
    or a bare value from a cache written before digests."""
    dataset, spec, other, store, art, truth = poison_cell
    key = content_key(spec)
    full = art.raw(key) if framed else art.get(key)
    art._cache.set(key, full[: len(full) // 2])
    logs = []
    got = poisoned_data(spec, StageContext(dataset, art, "cpu", store, logs.append))
    assert np.array_equal(got.y_train, truth.y_train)
    assert any("evicted" in m for m in logs), logs


# ----------------------------------------------------------------------------- timings (issue 24, case 4)
def test_wall_times_go_to_provenance_so_recomputations_agree(tmp_path):
    """Before: TE-NAS kept each round's wall time in its result, so two honest runs of one cell conflicted."""
    from naspoison.store import ResultStore

    spec = {"stage": "search", "version": "1", "params": {"algorithm": "tenas"}, "upstream": {}}

    def tenas_like(seconds):  # the shape of TE-NAS's result: per-round records with a wall time
        return lambda d: {"genotype": "g", "metric_seconds": seconds * 2,
                          "rounds": [{"pruned": ["skip"], "seconds": seconds}, {"pruned": ["conv"], "seconds": seconds}]}

    a, b = ResultStore(tmp_path / "a"), ResultStore(tmp_path / "b")
    ra = run_stage(a, spec, tenas_like(1.5), "cpu")
    run_stage(b, spec, tenas_like(9.25), "cpu")
    assert ra == {"genotype": "g", "rounds": [{"pruned": ["skip"]}, {"pruned": ["conv"]}]}
    rec_b = b.get("search", content_key(spec))
    assert rec_b.result == ra
    assert rec_b.provenance["timings"] == {"metric_seconds": 18.5, "rounds[0].seconds": 9.25,
                                          "rounds[1].seconds": 9.25}
    # recomputing into a store that has the cell is no conflict
    run_stage(a, spec, tenas_like(3.0), "cpu")
    assert not (tmp_path / "a" / ".conflicts").exists()


def test_loaded_npz_is_not_served_from_memory_after_the_file_changed(tmp_path):
    data = tmp_path / "d.npz"
    write_npz(data, 0)
    first = datasets.load_dataset({"name": "npz", "path": str(data)})
    write_npz(data, 1)
    os.utime(data, ns=(2, 2))
    second = datasets.load_dataset({"name": "npz", "path": str(data)})
    assert not np.array_equal(first.x_train, second.x_train)
    assert np.array_equal(second.x_train, np.load(data)["x_train"])
