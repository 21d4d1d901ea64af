"""Issue 24's "wrong result accepted as valid" cases: each must make the old result unusable or be detected."""
import os

import numpy as np
import pytest

from naspoison.data import datasets
from naspoison.run import stages
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
