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

from naspoison.attacks import ATTACKS, NO_ATTACK
from naspoison.report.stats import ALPHA, Summary, correct, effect_size, lower_test, rounded, significance_legend
from naspoison.report.table import Column, Entry, Table, pm


@dataclass(frozen=True)
class TrialAccuracy:
    row: str  # the attack (none: the clean row); for the OOD table, the search dataset
    budget: float | None
    algorithm: str
    seed: int
    accuracy: float  # percent


def analyse(trials: list[TrialAccuracy], baseline: list[float], alpha: float = ALPHA) -> dict:
    base = Summary.of(baseline)
    algorithms = sorted({t.algorithm for t in trials})
    groups: dict[tuple, list[float]] = {}
    for t in trials:
        groups.setdefault((t.row, t.budget, t.algorithm), []).append(t.accuracy)
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
                row["test"] = lower_test(s, clean)
                row["effect"] = effect_size(s, clean).to_dict()
            alg_rows.append(row)
        corrections[alg] = correct(alg_rows, alpha)
        rows += alg_rows
    return rounded({
        "baseline": {"n": base.n, "mean": base.mean, "std": base.std},
        "algorithms": algorithms,
        "rows": rows,
        "corrections": corrections,
        "test": "one-sided Welch t-test, H0: poisoning does not lower accuracy (vs the same algorithm's no-attack cells)",
    })


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


# ----------------------------------------------------------------------------- the table
def attack_title(name: str) -> str:
    if name == NO_ATTACK:
        return "No attack"
    # a report read back from another installation may name an attack this one does not have
    return ATTACKS[name].title if name in ATTACKS else name.replace("_", " ").capitalize()


def budget_text(b) -> str:
    return "-" if b is None else f"{b * 100:g}%"


def acc_text(r: dict) -> str:
    return "nan" if r["mean"] is None else pm(r)


def dimp_text(r: dict) -> str:
    return "-" if r.get("delta_imp") is None else f"{r['delta_imp']:.2f}"


def is_significant(r: dict) -> bool:
    return bool(r.get("test", {}).get("significant"))


def acc_dimp(r: dict | None) -> list[Entry]:
    """A row's Acc. and ΔImp. entries, both marked when its test is significant."""
    if r is None:
        return [Entry("-"), Entry("-")]
    return [Entry(acc_text(r), is_significant(r)), Entry(dimp_text(r), is_significant(r))]


def acc_dimp_columns(algorithms: list[str]) -> list[Column]:
    return [Column(name, group=a) for a in algorithms for name in ("Acc.", "ΔImp.")]


def notes(t: dict, row_name=lambda r: f"{attack_title(r['attack'])} {budget_text(r['budget'])}",
          nothing: str = "No attack") -> list[str]:
    """Under a table of ``analyse``'s layout: the baseline, what a mark means, the corrections, the untestable
    rows (named by ``row_name``), and, when no test is significant, that this run shows no effect."""
    b = t["baseline"]
    out = [f"Random-sampling baseline: {b['mean']:.2f} ± {b['std']:.2f} (n = {b['n']}); ΔImp = Acc. − baseline."
           if b["n"] else "Random-sampling baseline: none in the store, so no ΔImp.",
           significance_legend(t["test"], t["corrections"]), *correction_notes(t["corrections"])]
    for r in t["rows"]:
        reason = r.get("test", {}).get("untestable")
        if reason:
            out.append(f"untestable: {row_name(r)} × {r['algorithm']}: {reason}")
    tested = [r for r in t["rows"] if r.get("test") and not r["test"].get("untestable")]
    if tested and not any(r["test"].get("significant") for r in tested):
        # said outright, so that a small run (the demo) is not read as evidence of robustness
        out.append(f"{nothing} significantly lowered any algorithm's accuracy here ({len(tested)} tests): at this "
                   f"scale (seeds, epochs, data) the run shows the pipeline, not the paper's effects.")
    return out


def correction_notes(corrections: dict) -> list[str]:
    return [f"{alg}: BH over {c['n_tests']} tests; {c['untestable']} untestable." for alg, c in corrections.items()]


def tables(report: dict) -> list[Table]:
    """The paper's Table 1: rows = (attack, budget), (Acc., ΔImp.) per algorithm; read from the report's top
    level, where ``analyse`` puts it."""
    algs = report["algorithms"]
    grid: dict[tuple, dict[str, dict]] = {}
    for r in report["rows"]:
        grid.setdefault((r["attack"], r["budget"]), {})[r["algorithm"]] = r
    rows = [[Entry(attack_title(attack)), Entry(budget_text(budget)), *(e for a in algs for e in acc_dimp(by.get(a)))]
            for (attack, budget), by in grid.items()]
    columns = [Column("Poisoning attack", left=True), Column("p"), *acc_dimp_columns(algs)]
    return [Table("Robustness of NAS to data poisoning", columns, rows, notes(report), group_name="algorithm",
                  label="poisoning")]
