"""From per-trial accuracies to the poisoning table (paper Table 1) as plain data.

ΔImp = mean accuracy of a cell − mean accuracy of the random baseline (same profile and recipe).
Each poisoned cell is tested against the same algorithm's no-attack cell (one-sided Welch), and
BH controls the FDR over all of one algorithm's p-values.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from naspoison.attacks import NO_ATTACK
from naspoison.report.stats import Summary, benjamini_hochberg, effect_size, welch_less

ALPHA = 0.05


@dataclass(frozen=True)
class TrialAccuracy:
    attack: str
    budget: float | None
    algorithm: str
    seed: int
    accuracy: float  # percent


def _r(x, nd=6):
    """Round for the committed JSON, so the last ulp of a library version cannot change it."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)


def analyse(trials: list[TrialAccuracy], baseline: list[float], alpha: float = ALPHA) -> dict:
    base = Summary.of(baseline)
    algorithms = sorted({t.algorithm for t in trials})
    groups: dict[tuple, list[float]] = {}
    for t in trials:
        groups.setdefault((t.attack, t.budget, t.algorithm), []).append(t.accuracy)
    row_keys = sorted({(a, b) for a, b, _ in groups}, key=lambda k: (k[0] != NO_ATTACK, k[0], k[1] or 0.0))
    rows, corrections = [], {}
    for alg in algorithms:
        clean = Summary.of(groups.get((NO_ATTACK, None, alg), []))
        alg_rows = []
        for attack, budget in row_keys:
            if (attack, budget, alg) not in groups:
                continue
            s = Summary.of(groups[(attack, budget, alg)])
            row = {"attack": attack, "budget": budget, "algorithm": alg, "n": s.n, "mean": s.mean, "std": s.std,
                   "delta_imp": s.mean - base.mean if base.n else None}
            if attack != NO_ATTACK:
                w = welch_less(s, clean)
                row["test"] = {**w.to_dict(), "q": None, "significant": False}
                row["effect"] = effect_size(s, clean).to_dict()
            alg_rows.append(row)
        tested = [r for r in alg_rows if "test" in r and r["test"]["p"] is not None]
        q = benjamini_hochberg([r["test"]["p"] for r in tested])
        for r, qv in zip(tested, q):
            r["test"]["q"] = float(qv)
            r["test"]["significant"] = bool(qv <= alpha)
        corrections[alg] = {"method": "Benjamini-Hochberg", "alpha": alpha, "n_tests": len(tested),
                            "untestable": sum(1 for r in alg_rows if "test" in r and r["test"]["p"] is None)}
        rows += alg_rows
    return _rounded({
        "baseline": {"n": base.n, "mean": base.mean, "std": base.std},
        "algorithms": algorithms,
        "rows": rows,
        "corrections": corrections,
        "test": "one-sided Welch t-test, H0: poisoning does not lower accuracy (vs the same algorithm's no-attack cells)",
    })


def _rounded(obj):
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    if isinstance(obj, float):
        return _r(obj)
    return obj


def read_trials_csv(path: str | Path) -> tuple[list[TrialAccuracy], list[float]]:
    """Per-trial accuracies (percent) from a CSV with columns attack, budget, algorithm, seed, accuracy.

    ``attack`` is ``none`` for the no-attack row (budget empty); rows whose attack is
    ``random_baseline`` are the random-sampling baseline.
    """
    path = Path(path)
    trials, baseline = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"attack", "budget", "algorithm", "seed", "accuracy"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                acc = float(row["accuracy"])
                if not math.isfinite(acc):
                    raise ValueError("accuracy is not finite")
                if row["attack"] == "random_baseline":
                    baseline.append(acc)
                    continue
                budget = float(row["budget"]) if row["budget"].strip() else None
                if (budget is None) != (row["attack"] == NO_ATTACK):
                    raise ValueError("only the 'none' row has an empty budget")
                trials.append(TrialAccuracy(row["attack"], budget, row["algorithm"], int(row["seed"]), acc))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{line}: {e}") from None
    return trials, baseline
