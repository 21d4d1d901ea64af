"""``naspoison compare A B``: is a reproduction (B) of a table (A) the same up to seed noise?

Row by row (the poisoning table, the random baseline, the defended and out-of-distribution rows): the
two means, their difference B − A, a two-sided Welch test between the two reproductions' seeds (from
each row's mean, sample std and n), Benjamini–Hochberg over all compared rows, and whether the row's
own significance mark (poisoning lowers accuracy, q <= alpha) is the same in both. A difference is
"beyond noise" when its BH-adjusted q is <= alpha.
"""
from __future__ import annotations

import math

from naspoison.report.stats import ALPHA, Summary, benjamini_hochberg, welch_less

SECTIONS = ("rows", "defended", "ood")  # where a report keeps per-row summaries


def _row_id(section: str, row: dict) -> tuple:
    if section == "ood":  # its search dataset: "source" (before: "search_dataset", with "attack" repeating it)
        return (section, row.get("algorithm"), None, row.get("budget"), row.get("source") or row.get("search_dataset"))
    return (section, row.get("algorithm"), row.get("attack"), row.get("budget"), row.get("defense") or "")


def rows_of(report: dict) -> dict[tuple, dict]:
    """Every row with a mean/std/n in a report.json, keyed by (section, algorithm, attack, budget, extra)."""
    out: dict[tuple, dict] = {}
    if isinstance(report.get("baseline"), dict) and "mean" in report["baseline"]:
        out[("baseline", "random_baseline", None, None, "")] = report["baseline"]
    for section in SECTIONS:
        rows = report.get(section)
        rows = rows.get("rows") if isinstance(rows, dict) else rows
        for row in rows or []:
            if isinstance(row, dict) and {"mean", "std", "n"} <= set(row):
                out[_row_id(section, row)] = row
    return out


def welch_two_sided(a: Summary, b: Summary) -> dict:
    w = welch_less(b, a)
    if w.untestable:
        same = a.n >= 1 and b.n >= 1 and a.mean == b.mean
        # zero variance on both sides: equal means are the same result, different means are certainly different
        p = (1.0 if same else 0.0) if w.untestable == "zero variance in both groups" else None
        return {"t": None, "df": None, "p": p, "untestable": w.untestable}
    return {"t": w.t, "df": w.df, "p": min(1.0, 2 * min(w.p, 1 - w.p)), "untestable": None}


def _mark(row: dict) -> bool | None:
    test = row.get("test")
    return test.get("significant") if isinstance(test, dict) else None


def compare(a: dict, b: dict, alpha: float = ALPHA) -> dict:
    """Compare two report.json dicts; ``rows`` are in A's order, then B-only rows are listed as missing."""
    ra, rb = rows_of(a), rows_of(b)
    rows = []
    for key, x in ra.items():
        if key not in rb:
            continue
        y = rb[key]
        sa, sb = Summary(int(x["n"]), float(x["mean"]), float(x["std"])), Summary(int(y["n"]), float(y["mean"]), float(y["std"]))
        rows.append({"section": key[0], "algorithm": key[1], "attack": key[2], "budget": key[3], "extra": key[4],
                     "a": {"mean": sa.mean, "std": sa.std, "n": sa.n}, "b": {"mean": sb.mean, "std": sb.std, "n": sb.n},
                     "diff": sb.mean - sa.mean, "welch": welch_two_sided(sa, sb),
                     "mark_a": _mark(x), "mark_b": _mark(y)})
    testable = [i for i, r in enumerate(rows) if r["welch"]["p"] is not None]
    q = benjamini_hochberg([rows[i]["welch"]["p"] for i in testable])
    for i, qi in zip(testable, q, strict=True):
        rows[i]["q"] = float(qi)
    for r in rows:
        r.setdefault("q", None)
        r["beyond_noise"] = r["q"] is not None and r["q"] <= alpha
        r["mark_flips"] = r["mark_a"] is not None and r["mark_b"] is not None and r["mark_a"] != r["mark_b"]
    return {"alpha": alpha, "rows": rows, "only_a": [list(k) for k in ra if k not in rb],
            "only_b": [list(k) for k in rb if k not in ra],
            "beyond_noise": sum(r["beyond_noise"] for r in rows), "mark_flips": sum(r["mark_flips"] for r in rows),
            "test": "two-sided Welch t-test between the reproductions per row, Benjamini-Hochberg over the rows"}


def _f(x, nd=2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def to_text(c: dict) -> str:
    lines = [f"{'row':<52} {'A mean±sd (n)':>20} {'B mean±sd (n)':>20} {'B−A':>7} {'p':>7} {'q':>7}  verdict"]
    for r in c["rows"]:
        name = "/".join(str(v) for v in (r["section"], r["algorithm"], r["attack"], r["budget"], r["extra"])
                        if v not in (None, ""))
        verdict = ("BEYOND NOISE" if r["beyond_noise"] else "within noise" if r["q"] is not None
                   else f"untestable ({r['welch']['untestable']})")
        if r["mark_flips"]:
            verdict += f"; significance mark flips ({'*' if r['mark_a'] else '-'} → {'*' if r['mark_b'] else '-'})"
        a, b = (f"{_f(x['mean'])}±{_f(x['std'])} ({x['n']})" for x in (r["a"], r["b"]))
        lines.append(f"{name[:52]:<52} {a:>20} {b:>20} {_f(r['diff']):>7} "
                     f"{_f(r['welch']['p'], 3):>7} {_f(r['q'], 3):>7}  {verdict}")
    lines.append(f"compare: {len(c['rows'])} rows in both, {c['beyond_noise']} differ beyond seed noise "
                 f"(BH q <= {c['alpha']}), {c['mark_flips']} significance marks flip; "
                 f"{len(c['only_a'])} only in A, {len(c['only_b'])} only in B")
    return "\n".join(lines)
