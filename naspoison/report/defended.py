"""The countermeasure table (the poisoning paper's Table 4): a row per (countermeasure, attack), ΔImp per
algorithm with the defended search's accuracy; each tested against the same algorithm's *undefended*
search on the same poisoned set (one-sided Welch, H0: the countermeasure does not raise accuracy; BH per
algorithm)."""
from __future__ import annotations

from naspoison.report.analysis import acc_text, attack_title, budget_text, correction_notes, dimp_text
from naspoison.report.stats import ALPHA, Summary, correct, effect_size, lower_test, rounded, significance_legend
from naspoison.report.table import Column, Entry, Table

TEST = ("one-sided Welch t-test, H0: the countermeasure does not raise accuracy (vs the same algorithm's "
        "undefended search on the same poisoned set)")


def defended_section(defended: list[dict], poisoned, baseline: list[float], alpha: float = ALPHA) -> dict:
    """``defended``: per-trial rows of the defended searches; ``poisoned``: the poisoning family's
    per-trial accuracies (TrialAccuracy), where the undefended rows come from."""
    base = Summary.of(baseline)
    groups: dict[tuple, list[float]] = {}
    for r in defended:
        groups.setdefault((r["defense"], r["attack"], r["budget"], r["algorithm"]), []).append(r["accuracy"])
    undefended: dict[tuple, list[float]] = {}
    for t in poisoned:
        undefended.setdefault((t.row, t.budget, t.algorithm), []).append(t.accuracy)
    rows, corrections = [], {}
    for alg in sorted({k[3] for k in groups}):
        mine = []
        for (defense, attack, budget, a), accs in sorted(groups.items(), key=lambda kv: kv[0][:3]):
            if a != alg:
                continue
            s, u = Summary.of(accs), Summary.of(undefended.get((attack, budget, alg), []))
            row = {"defense": defense, "attack": attack, "budget": budget, "algorithm": alg, "n": s.n,
                   "mean": s.mean, "std": s.std, "delta_imp": s.mean - base.mean if base.n else None,
                   "undefended": {"n": u.n, "mean": u.mean if u.n else None,
                                  "delta_imp": u.mean - base.mean if u.n and base.n else None}}
            if u.n:
                row["test"] = lower_test(u, s)  # H1: undefended < defended
                row["effect"] = effect_size(s, u).to_dict()
            else:
                row["test"] = {"p": None, "untestable": "no undefended cells in the store", "q": None,
                               "significant": False}
            mine.append(row)
        corrections[alg] = correct(mine, alpha)
        rows += mine
    return rounded({"baseline": {"n": base.n, "mean": base.mean, "std": base.std},
                     "algorithms": sorted({r["algorithm"] for r in rows}), "rows": rows,
                     "corrections": corrections, "test": TEST})


def _entry(r: dict | None) -> Entry:
    if r is None:
        return Entry("-")
    und = r["undefended"]["delta_imp"]
    return Entry(f"{dimp_text(r)} (Acc. {acc_text(r)}; undefended {'-' if und is None else f'{und:.2f}'})",
                 r["test"]["significant"])


def tables(t: dict) -> list[Table]:
    """The poisoning paper's Table 4: a row per (countermeasure, attack, budget), ΔImp per algorithm."""
    from naspoison.sanitize import SANITIZERS

    grid: dict[str, dict[str, dict]] = {}
    for r in t["rows"]:
        name = f"{SANITIZERS[r['defense']].title} ({attack_title(r['attack'])}, {budget_text(r['budget'])})"
        grid.setdefault(name, {})[r["algorithm"]] = r
    b = t["baseline"]
    notes = [f"ΔImp = Acc. − random-sampling baseline ({b['mean']:.2f}, n = {b['n']})." if b["n"]
             else "No random-sampling baseline in the store: no ΔImp.",
             significance_legend(t["test"], t["corrections"]), *correction_notes(t["corrections"])]
    algs = t["algorithms"]
    return [Table("Poisoning countermeasures", [Column("Defense (attack, p)", left=True),
                                                *(Column("ΔImp.", group=a) for a in algs)],
                  [[Entry(name), *(_entry(by.get(a)) for a in algs)] for name, by in grid.items()], notes,
                  group_name="algorithm", label="defended")]
