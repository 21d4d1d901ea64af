"""Metric sensitivity (poisoning paper Table 2): the same architectures at the same initialisation on
the same samples, so only the data moves a metric; the % change statistics against hand values; the
family end to end, sharing its poisoned set with the poisoning family."""
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import naspoison

from naspoison.analyses.sensitivity import (
    TABLE_METRICS,
    SensitivityParams,
    metric_values,
    percent_change,
    sample_indices,
    sensitivity_table,
)
from naspoison.nas.tenas import alive_of, to_genotype
from naspoison.spaces.darts import sample_genotype
from naspoison.store import ResultStore

SMALL = SensitivityParams(archs=3, samples=48, robot_batch_size=24, robot_channels=4, robot_layers=3,
                          tenas={"batch_size": 6, "lr_batch_size": 100, "lr_batches": 1, "repeats": 1})
LABEL_FREE = ("ntk_cond", "linear_regions", "jacob_cov")


def test_genotype_mask_round_trips_through_tenas():
    for seed in range(5):
        g = sample_genotype(np.random.default_rng(seed))
        alive = alive_of(g)
        assert all(a.sum() == 8 for a in alive.values())  # two edges per node, one op each
        assert to_genotype(alive) == g


def test_only_the_data_moves_a_metric(digits_small):
    clean = metric_values(digits_small, SMALL)
    assert clean["metrics"] == TABLE_METRICS and len(clean["values"]) == 3
    assert metric_values(digits_small, SMALL)["values"] == clean["values"]  # same inits, same samples
    idx = sample_indices(len(digits_small.y_train), SMALL)
    # flip every sampled label: label-free metrics cannot move, loss-gradient metrics must
    y = digits_small.y_train.copy()
    y[idx] = (y[idx] + 1) % 10
    flipped = metric_values(replace(digits_small, y_train=y), SMALL)
    table = sensitivity_table(clean, [{"attack": "flip", "budget": 1.0, "result": flipped}])
    change = table["rows"][0]["change"]
    for m in LABEL_FREE:
        assert change[m]["mean"] == 0.0 and change[m]["std"] == 0.0, m
    for m in ("grad_norm", "snip", "fisher"):  # every architecture's loss gradient sees the new labels
        j = TABLE_METRICS.index(m)
        assert all(c[j] != f[j] for c, f in zip(clean["values"], flipped["values"])), m
    # images outside the sampled indices are never read: shuffling them among themselves (which keeps the
    # channel statistics exactly) changes nothing
    rest = np.setdiff1d(np.arange(len(y)), idx)
    x = digits_small.x_train.copy()
    x[rest] = x[np.random.default_rng(0).permutation(rest)]
    assert not np.array_equal(x, digits_small.x_train)
    assert metric_values(replace(digits_small, x_train=x), SMALL)["values"] == clean["values"]
    # noise on the sampled images moves the image metrics
    rng = np.random.default_rng(0)
    x = digits_small.x_train.copy()
    x[idx] = np.clip(x[idx] + rng.normal(0, 40, x[idx].shape), 0, 255).astype(np.uint8)
    noisy = sensitivity_table(clean, [{"attack": "noise", "budget": 1.0,
                                       "result": metric_values(replace(digits_small, x_train=x), SMALL)}])
    assert noisy["rows"][0]["change"]["ntk_cond"]["mean"] != 0.0


def test_percent_change_against_hand_values():
    # clean 2, 4, -5, 0 (excluded), None (excluded); poisoned 3, 3, -4, 1, 1
    r = percent_change([2.0, 4.0, -5.0, 0.0, None], [3.0, 3.0, -4.0, 1.0, 1.0])
    # changes: +50, -25, +20 (|-5| in the denominator)
    assert r["n"] == 3 and r["excluded"] == 2
    assert r["mean"] == pytest.approx(15.0)
    assert r["std"] == pytest.approx(np.sqrt(((50 - 15) ** 2 + (-25 - 15) ** 2 + (20 - 15) ** 2) / 2))
    assert percent_change([1.0], [2.0]) == {"mean": 100.0, "std": None, "n": 1, "excluded": 0}


SENS_SUITE = """\
version: 1
families:
  poisoning:
    attacks: [none, random_label_flip]
    budgets: [0.5]
    algorithms: [random]
  metric_sensitivity:
    attacks: [random_label_flip, gaussian_noise]
profiles:
  tiny:
    seeds: 1
    dataset: {name: digits, train_size: 200, test_size: 60}
    train: {epochs: 1, batch_size: 64, init_channels: 4, layers: 3, crop_padding: 1, flip: false, cutout: 2}
    sensitivity: {archs: 3, samples: 48, robot_batch_size: 24, robot_channels: 4, robot_layers: 3,
                  tenas: {batch_size: 6, lr_batch_size: 100, lr_batches: 1, repeats: 1}}
"""


def test_family_runs_shares_the_poisoned_set_and_reports(tmp_path):
    (tmp_path / "suite.yaml").write_text(SENS_SUITE)
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert run.returncode == 0, run.stdout + run.stderr
    store = ResultStore(tmp_path / "cache", read_only=True)
    records = [store.load_file(p) for p in store.iter_files()]
    assert sum(r.stage == "poison" for r in records) == 2  # the label flip is the poisoning family's cell
    metric_cells = [r for r in records if r.stage == "metrics"]
    assert len(metric_cells) == 3
    assert {r.spec["upstream"]["poison"] for r in metric_cells} == {None} | {r.key for r in records if r.stage == "poison"}
    report = json.loads((tmp_path / "reports/tiny/report.json").read_text())
    rows = {r["attack"]: r["change"] for r in report["sensitivity"]["rows"]}
    assert set(rows) == {"random_label_flip", "gaussian_noise"}
    assert all(rows["random_label_flip"][m]["mean"] == 0.0 for m in LABEL_FREE)
    md = (tmp_path / "reports/tiny/report.md").read_text()
    assert "## Sensitivity of training-free metrics" in md and "| Random label-flipping (50%) | 0.00 ± 0.00%" in md
    assert (tmp_path / "reports/tiny/metric_sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    again = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--check")
    assert again.returncode == 0, again.stdout


def test_nas_aware_attack_is_rejected_with_its_line(tmp_path):
    bad = SENS_SUITE.replace("attacks: [random_label_flip, gaussian_noise]", "attacks: [nas_gradient_canceling]")
    (tmp_path / "suite.yaml").write_text(bad)
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert run.returncode == 2
    assert "suite.yaml:8" in run.stderr and "no victim" in run.stderr
