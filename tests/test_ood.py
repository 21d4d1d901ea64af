"""Out-of-distribution search (poisoning paper Table 3): sources brought to the target shape, searched
on, retrained on the target; the in-distribution row is the poisoning family's clean search."""
import json

import numpy as np
import pytest
from conftest import naspoison

from naspoison.data.datasets import load_dataset, make_image_data, to_shape
from naspoison.store import ResultStore


def test_grey_sources_come_out_in_the_cifar_shape():
    rng = np.random.default_rng(0)
    grey = make_image_data("g", rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5) % 2,
                           rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.arange(3) % 2)
    out = to_shape(grey, [32, 32, 3])
    assert out.x_train.shape == (5, 32, 32, 3) and out.x_test.shape == (3, 32, 32, 3) and out.x_train.dtype == np.uint8
    assert (out.x_train[..., 0] == out.x_train[..., 2]).all()  # grey repeated into every channel
    np.testing.assert_array_equal(out.y_train, grey.y_train)
    # a constant image stays constant through any resize; colour to grey is ITU-R 601 luma
    const = make_image_data("c", np.full((2, 10, 10, 3), (200, 100, 50), np.uint8), [0, 1],
                            np.full((1, 10, 10, 3), 7, np.uint8), [0])
    small = to_shape(const, [4, 4, 1])
    assert small.x_train.shape == (2, 4, 4, 1)
    assert (small.x_train == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)).all() and (small.x_test == 7).all()
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_shape(const, [4, 4, 2])


def test_photo_patches_are_offline_colour_patches_and_resize_through_the_spec():
    d = load_dataset({"name": "photo_patches"})
    assert d.shape == (32, 32, 3) and d.num_classes == 10 and set(np.unique(d.y_train)) == set(range(10))
    r = load_dataset({"name": "photo_patches", "resize": [8, 8, 1]})
    assert r.shape == (8, 8, 1) and len(r.x_train) == len(d.x_train)


OOD_SUITE = """\
version: 1
families:
  poisoning:
    attacks: [none]
    budgets: [0.5]
    algorithms: [random, tenas]
  ood_search:
    algorithms: [random, tenas]
  random_baseline: {}
profiles:
  tiny:
    seeds: 2
    dataset: {name: digits, train_size: 200, test_size: 80}
    train: {epochs: 1, batch_size: 64, init_channels: 4, layers: 3, crop_padding: 1, flip: false, cutout: 2}
    algorithms:
      tenas: {batch_size: 4, lr_batch_size: 100, lr_batches: 1, repeats: 1, prune_per_round: 7}
    ood: {shape: [8, 8, 1], datasets: [{name: photo_patches, train_size: 300, test_size: 50}]}
"""


@pytest.mark.slow
def test_ood_family_searches_on_the_source_and_retrains_on_the_target(tmp_path):
    (tmp_path / "suite.yaml").write_text(OOD_SUITE)
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert run.returncode == 0, run.stdout + run.stderr
    store = ResultStore(tmp_path / "cache", read_only=True)
    records = [store.load_file(p) for p in store.iter_files()]
    searches = [r for r in records if r.stage == "search"]
    # 2 algorithms x 2 seeds on digits (shared with the poisoning family) and on the photo patches
    assert len(searches) == 8
    ood = [r for r in searches if r.spec["params"]["dataset"]["name"] == "photo_patches"]
    assert len(ood) == 4 and all(r.spec["params"]["dataset"]["resize"] == [8, 8, 1] for r in ood)
    assert all("resize" not in r.spec["params"]["dataset"] for r in searches if r not in ood)
    assert all(r.spec["params"]["dataset"]["name"] == "digits" for r in records if r.stage == "train")
    report = json.loads((tmp_path / "reports/tiny/report.json").read_text())
    rows = {(r["source"], r["algorithm"]): r for r in report["ood"]["rows"]}
    assert set(rows) == {(d, a) for d in ("digits", "photo_patches") for a in ("random", "tenas")}
    # random reads no data: its architectures, hence accuracies, are those of the in-distribution row
    assert rows["photo_patches", "random"]["mean"] == rows["digits", "random"]["mean"]
    assert rows["photo_patches", "random"]["test"]["significant"] is False
    assert report["ood"]["corrections"]["tenas"]["n_tests"] == 1
    md = (tmp_path / "reports/tiny/report.md").read_text()
    assert "## Out-of-distribution search" in md and "| digits (in-distribution) |" in md
    assert (tmp_path / "reports/tiny/delta_imp.png").read_bytes()[:4] == b"\x89PNG"
    check = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--check")
    assert check.returncode == 0, check.stdout


def test_ood_family_needs_sources_in_every_profile(tmp_path):
    (tmp_path / "suite.yaml").write_text(OOD_SUITE.replace(
        "    ood: {shape: [8, 8, 1], datasets: [{name: photo_patches, train_size: 300, test_size: 50}]}\n", ""))
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert run.returncode == 2 and "needs ood.datasets" in run.stderr
    (tmp_path / "suite.yaml").write_text(OOD_SUITE.replace("name: photo_patches", "name: mnsit"))
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert run.returncode == 2 and "did you mean 'mnist'" in run.stderr


def test_a_suite_without_the_poisoning_family_prints_no_empty_table():
    from naspoison.report.render import to_latex, to_markdown

    only_analyses = {"algorithms": ["tenas"], "rows": [], "baseline": {"n": 2, "mean": 40.0, "std": 1.0}}
    assert "Poisoning attack" not in to_markdown(only_analyses) and "Poisoning attack" not in to_latex(only_analyses)
