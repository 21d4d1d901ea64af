"""``naspoison compare A B`` on synthetic report.json files: the Welch p-values between the reproductions and
the BH q-values are scipy's on the raw per-seed numbers the summaries were made from."""
import json

import numpy as np
import pytest
from scipy import stats

from naspoison.cli import main
from naspoison.report.compare import compare


def _row(alg, attack, budget, values, significant=None):
    v = np.asarray(values, dtype=float)
    row = {"algorithm": alg, "attack": attack, "budget": budget, "n": len(v), "mean": float(v.mean()),
           "std": float(v.std(ddof=1))}
    if significant is not None:
        row["test"] = {"significant": significant}
    return row


RAW_A = {("random", "none", None): [96.1, 97.2, 95.8, 96.9, 97.5],
         ("random", "gaussian_noise", 0.5): [95.0, 96.1, 94.2, 95.8, 96.0],
         ("pdarts", "none", None): [97.0, 96.4, 97.9, 96.8, 97.3]}
RAW_B = {("random", "none", None): [96.3, 97.0, 96.2, 97.4, 96.8],           # the same, up to noise
         ("random", "gaussian_noise", 0.5): [91.0, 90.2, 91.8, 90.5, 91.1],  # far lower: beyond noise
         ("pdarts", "none", None): [97.1, 96.9, 97.6, 97.0, 97.2]}
BASE_A, BASE_B = [97.0, 98.1, 96.6, 97.8, 98.4], [97.3, 97.9, 96.9, 98.0, 98.2]


def _report(raw, base, marks, extra=()):
    rows = [_row(*k, v, significant=marks.get(k)) for k, v in raw.items()] + list(extra)
    b = np.asarray(base)
    return {"rows": rows, "baseline": {"n": len(b), "mean": float(b.mean()), "std": float(b.std(ddof=1))}}


def test_welch_and_bh_match_scipy_on_the_raw_numbers():
    marks_a = {("random", "gaussian_noise", 0.5): False}
    marks_b = {("random", "gaussian_noise", 0.5): True}
    only_a = _row("tenas", "none", None, [95.0, 96.0])
    c = compare(_report(RAW_A, BASE_A, marks_a, [only_a]), _report(RAW_B, BASE_B, marks_b))
    order = [("baseline", BASE_A, BASE_B)] + [(k, RAW_A[k], RAW_B[k]) for k in RAW_A]
    p_expected = [stats.ttest_ind(b, a, equal_var=False).pvalue for _, a, b in order]
    q_expected = stats.false_discovery_control(p_expected, method="bh")
    assert len(c["rows"]) == 4
    for r, (_, a, b), p, q in zip(c["rows"], order, p_expected, q_expected, strict=True):
        assert r["diff"] == pytest.approx(np.mean(b) - np.mean(a))
        assert r["welch"]["p"] == pytest.approx(p, rel=1e-9)
        assert r["q"] == pytest.approx(q, rel=1e-9)
        assert r["beyond_noise"] == (q <= 0.05)
    by = {(r["algorithm"], r["attack"]): r for r in c["rows"]}
    assert by[("random", "gaussian_noise")]["beyond_noise"] and not by[("random", "none")]["beyond_noise"]
    assert by[("random", "gaussian_noise")]["mark_flips"] and c["mark_flips"] == 1
    assert c["only_a"] == [["rows", "tenas", "none", None, ""]] and c["only_b"] == []


def test_identical_reports_agree_and_the_command_exits_by_the_verdict(tmp_path, capsys):
    a = _report(RAW_A, BASE_A, {})
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(_report(RAW_B, BASE_B, {})))
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "0 differ beyond seed noise" in out and out.count("within noise") == 4
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "c.json")]) == 1
    assert "BEYOND NOISE" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["beyond_noise"] == 1
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 2


def test_zero_variance_rows():
    one = {"rows": [{"algorithm": "x", "attack": "none", "budget": None, "n": 3, "mean": 90.0, "std": 0.0}]}
    other = {"rows": [{"algorithm": "x", "attack": "none", "budget": None, "n": 3, "mean": 91.0, "std": 0.0}]}
    assert compare(one, one)["rows"][0]["welch"]["p"] == 1.0
    assert compare(one, other)["rows"][0]["beyond_noise"]
