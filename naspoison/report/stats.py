"""Statistics of the poisoning tables (SPEC §7): one-sided Welch tests, Benjamini–Hochberg, effect
sizes with confidence intervals. Plain numbers in, named results out; works from raw trials or
from published summary statistics (mean, sample std, n) alike.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05  # the false-discovery rate every table's Benjamini–Hochberg correction controls
MARK = "†"    # what marks a significant entry, besides bold + underline, in every format


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1); 0.0 when n < 2

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        a = np.asarray(values, dtype=np.float64)
        if a.size == 0:
            return cls(0, math.nan, math.nan)
        return cls(int(a.size), float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0)


@dataclass(frozen=True)
class WelchResult:
    t: float | None
    df: float | None
    p: float | None
    untestable: str | None = None  # why no test was possible

    def to_dict(self) -> dict:
        return asdict(self)


def welch_less(treated: Summary, control: Summary) -> WelchResult:
    """One-sided Welch t-test of H0 "treated mean >= control mean" against H1 "treated is lower".

    Untestable (and said so) when either group has n < 2, or both have zero variance.
    """
    if treated.n < 2 or control.n < 2:
        return WelchResult(None, None, None, f"n < 2 (n = {treated.n} vs {control.n})")
    v1, v0 = treated.std ** 2 / treated.n, control.std ** 2 / control.n
    se2 = v1 + v0
    if se2 == 0.0:
        return WelchResult(None, None, None, "zero variance in both groups")
    t = (treated.mean - control.mean) / math.sqrt(se2)
    df = se2 ** 2 / ((v1 ** 2 / (treated.n - 1) if v1 else 0.0) + (v0 ** 2 / (control.n - 1) if v0 else 0.0))
    from scipy import special  # not scipy.stats (~1 s to import); stats.t.cdf is special.stdtr underneath

    return WelchResult(t, df, float(special.stdtr(df, t)))


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """BH-adjusted p-values (q-values); reject where q <= alpha. Monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def lower_test(lower: Summary, higher: Summary) -> dict:
    """A row's ``test`` before correction: one-sided Welch of H1 "``lower``'s mean is below ``higher``'s"."""
    return {**welch_less(lower, higher).to_dict(), "q": None, "significant": False}


def correct(rows: list[dict], alpha: float = ALPHA) -> dict:
    """Benjamini–Hochberg over one family of rows' tests (a row without ``test`` is not in the family; one
    whose p is None is untestable): sets each tested row's q and mark in place, returns the correction."""
    tests = [r["test"] for r in rows if "test" in r]
    tested = [t for t in tests if t["p"] is not None]
    for t, q in zip(tested, benjamini_hochberg([t["p"] for t in tested]), strict=True):
        t["q"], t["significant"] = float(q), bool(q <= alpha)
    return {"method": "Benjamini-Hochberg", "alpha": alpha, "n_tests": len(tested),
            "untestable": len(tests) - len(tested)}


def significance_legend(test: str, corrections: dict) -> str:
    """What a mark means: the test and its correction, at the α the section was corrected at."""
    alpha = next(iter(corrections.values()), {}).get("alpha", ALPHA)
    return f"{MARK} significant: {test}; Benjamini–Hochberg per algorithm, α = {alpha}."


def rounded(obj, nd: int = 6):
    """Floats rounded for the committed JSON, so the last ulp of a library version cannot change it; NaN and
    infinities become None."""
    if isinstance(obj, dict):
        return {k: rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v, nd) for v in obj]
    if isinstance(obj, float):
        return round(float(obj), nd) if math.isfinite(obj) else None  # float(): numpy's own round differs
    return obj


@dataclass(frozen=True)
class Effect:
    diff: float                 # treated − control, in the data's units
    ci_low: float | None        # Welch confidence interval of the difference
    ci_high: float | None
    hedges_g: float | None      # standardised difference, small-sample corrected
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def effect_size(treated: Summary, control: Summary, level: float = 0.95) -> Effect:
    diff = treated.mean - control.mean
    w = welch_less(treated, control)
    if w.untestable:
        return Effect(diff, None, None, None, level)
    se = math.sqrt(treated.std ** 2 / treated.n + control.std ** 2 / control.n)
    from scipy import special  # stats.t.ppf is special.stdtrit underneath

    half = float(special.stdtrit(w.df, 0.5 + level / 2)) * se
    n1, n0 = treated.n, control.n
    pooled = math.sqrt(((n1 - 1) * treated.std ** 2 + (n0 - 1) * control.std ** 2) / (n1 + n0 - 2))
    g = None
    if pooled > 0:
        correction = 1 - 3 / (4 * (n1 + n0) - 9)
        g = diff / pooled * correction
    return Effect(diff, diff - half, diff + half, g, level)
