import csv

import numpy as np
import pytest
from scipy import stats as sps

from naspoison.report.analysis import TrialAccuracy, analyse, read_trials_csv
from naspoison.report.render import FORMATS, to_console
from naspoison.report.stats import Summary, benjamini_hochberg, effect_size, welch_less

# Paper Table 1 (mean, std over n = 10 trials) and its bold+underlined cells.
ROWS = [("none", None), ("gaussian_noise", .01), ("gaussian_noise", .1), ("gaussian_noise", .5),
        ("gradient_canceling", .01), ("gradient_canceling", .1), ("gradient_canceling", .5),
        ("random_label_flip", .01), ("random_label_flip", .1), ("random_label_flip", .5),
        ("confidence_label_flip", .01), ("confidence_label_flip", .1), ("confidence_label_flip", .5)]
TABLE1 = {
    "P-DARTS": [(97.32, .07), (97.33, .12), (97.17, .13), (97.26, .11), (97.19, .15), (97.21, .18), (97.15, .15),
                (97.23, .23), (97.22, .19), (96.77, .38), (97.11, .20), (97.27, .11), (97.04, .29)],
    "RoBoT": [(96.99, .20), (97.10, .10), (97.08, .12), (97.03, .04), (97.01, .15), (97.20, .18), (97.13, .08),
              (97.13, .23), (96.95, .13), (97.04, .13), (97.03, .31), (96.88, .06), (97.15, .04)],
    "TE-NAS": [(96.80, .40), (96.91, .29), (96.67, .46), (96.71, .31), (96.85, .28), (96.86, .23), (96.91, .31)],
}
PAPER_BOLD = {("P-DARTS", "gaussian_noise", .1), ("P-DARTS", "gradient_canceling", .01),
              ("P-DARTS", "gradient_canceling", .5), ("P-DARTS", "random_label_flip", .5),
              ("P-DARTS", "confidence_label_flip", .01), ("P-DARTS", "confidence_label_flip", .5)}


def test_welch_matches_scipy_on_raw_samples():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(0, 1, rng.integers(2, 12)), rng.normal(0.3, 2, rng.integers(2, 12))
        ours = welch_less(Summary.of(a), Summary.of(b))
        ref = sps.ttest_ind(a, b, equal_var=False, alternative="less")
        assert ours.p == pytest.approx(ref.pvalue, rel=1e-9) and ours.t == pytest.approx(ref.statistic)


def test_welch_states_why_a_cell_is_untestable():
    assert "n < 2" in welch_less(Summary.of([1.0]), Summary.of([1.0, 2.0])).untestable
    assert "zero variance" in welch_less(Summary.of([1.0, 1.0]), Summary.of([2.0, 2.0])).untestable


def test_bh_matches_scipy():
    rng = np.random.default_rng(1)
    for m in (1, 2, 7, 30):
        p = rng.uniform(0, 0.2, m)
        assert np.allclose(benjamini_hochberg(p), sps.false_discovery_control(p))


def test_effect_ci_matches_scipy_welch_interval():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 8), rng.normal(1, 1.5, 6)
    e = effect_size(Summary.of(a), Summary.of(b))
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (e.ci_low, e.ci_high) == pytest.approx((ci.low, ci.high))
    assert e.diff == pytest.approx(a.mean() - b.mean())


def _paper_trials():
    """Ten values per cell with exactly the published mean and sample std."""
    trials = []
    z = np.random.default_rng(0).standard_normal(10)
    z = (z - z.mean()) / z.std(ddof=1)
    for alg, cells in TABLE1.items():
        for (attack, budget), (m, s) in zip([r for r in ROWS if alg != "TE-NAS" or "label" not in r[0]], cells):
            trials += [TrialAccuracy(attack, budget, alg, i, float(m + s * v)) for i, v in enumerate(z)]
    return trials


def test_paper_table1_significance_marks_are_reproduced():
    report = analyse(_paper_trials(), [96.73] * 10)
    marked = {(r["algorithm"], r["attack"], r["budget"]) for r in report["rows"] if r.get("test", {}).get("significant")}
    assert marked == PAPER_BOLD
    # raw p <= 0.05 would also mark GC 10% for P-DARTS: the correction matters
    gc10 = next(r for r in report["rows"] if r["algorithm"] == "P-DARTS" and r["attack"] == "gradient_canceling"
                and r["budget"] == .1)
    assert gc10["test"]["p"] < 0.05 and not gc10["test"]["significant"]
    assert report["corrections"]["P-DARTS"]["n_tests"] == 12 and report["corrections"]["TE-NAS"]["n_tests"] == 6
    none = next(r for r in report["rows"] if r["algorithm"] == "P-DARTS" and r["attack"] == "none")
    assert none["delta_imp"] == pytest.approx(0.59, abs=1e-9)  # 97.32 - 96.73


def test_csv_of_trials_reproduces_the_same_report(tmp_path):
    trials = _paper_trials()
    path = tmp_path / "trials.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["attack", "budget", "algorithm", "seed", "accuracy"])
        for t in trials:
            w.writerow([t.row, "" if t.budget is None else t.budget, t.algorithm, t.seed, repr(t.accuracy)])
        for i in range(10):
            w.writerow(["random_baseline", "", "random", i, 96.73])
    got_trials, baseline = read_trials_csv(path)
    assert analyse(got_trials, baseline) == analyse(trials, [96.73] * 10)


def test_bad_csv_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("attack,budget,algorithm,seed,accuracy\nnone,,random,0,97.1\nnone,,random,1,abc\n")
    with pytest.raises(ValueError, match="bad.csv:3"):
        read_trials_csv(path)


def test_renderers_mark_significant_cells():
    report = analyse(_paper_trials(), [96.73] * 10)
    md, tex, csv_text = FORMATS["md"](report), FORMATS["tex"](report), FORMATS["csv"](report)
    assert md.count("†") >= 2 * len(PAPER_BOLD)
    assert tex.count(r"\textbf{\underline{") == 2 * len(PAPER_BOLD)
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert sum(line.split(",")[11] == "True" for line in csv_text.splitlines()[1:]) == len(PAPER_BOLD)
    assert "BH over 12 tests" in md
    from rich.console import Console
    console = Console(record=True, width=200)
    console.print(to_console(report))
    assert "97.17 ± 0.13" in console.export_text()


def test_a_run_where_no_attack_moves_anything_says_so():
    """The paper's table has significant cells: no such note. The same rows with every poisoned accuracy at the
    no-attack level (nothing can test significant): the note, with the number of tests behind it."""
    from naspoison.report.analysis import notes as footnotes

    paper = analyse(_paper_trials(), [96.73] * 10)
    assert not any("No attack significantly lowered" in n for n in footnotes(paper))
    clean = {(t.algorithm, t.seed): t.accuracy for t in _paper_trials() if t.row == "none"}
    flat = [TrialAccuracy(t.row, t.budget, t.algorithm, t.seed, clean[t.algorithm, t.seed]) for t in _paper_trials()]
    report = analyse(flat, [96.73] * 10)
    n_tests = sum(c["n_tests"] for c in report["corrections"].values())
    assert n_tests == 12 + 12 + 6
    assert f"No attack significantly lowered any algorithm's accuracy here ({n_tests} tests)" in FORMATS["md"](report)


def test_spearman_matches_scipy_and_the_rank_formula():
    """The report's own Spearman (it does not import scipy.stats) against scipy and, without ties, against
    rho = 1 - 6 Σd² / (n (n² - 1))."""
    from naspoison.report.evas import average_ranks, spearman

    assert list(average_ranks([3.0, 1.0, 3.0, 2.0])) == [3.5, 1.0, 3.5, 2.0]
    rho, _ = spearman([1, 2, 3, 4], [1, 3, 2, 4])
    assert rho == pytest.approx(1 - 6 * 2 / (4 * 15))
    rng = np.random.default_rng(3)
    for n in (3, 5, 12, 40):
        for x, y in ((rng.normal(size=n), rng.normal(size=n)),
                     (rng.integers(0, 3, n).astype(float), rng.integers(0, 4, n).astype(float))):
            if len(set(x)) < 2 or len(set(y)) < 2:
                continue
            want = sps.spearmanr(x, y)
            got = spearman(x, y)
            assert got[0] == pytest.approx(float(want[0]), rel=1e-12, abs=1e-15)
            assert got[1] == pytest.approx(float(want[1]), rel=1e-12, abs=1e-300)
