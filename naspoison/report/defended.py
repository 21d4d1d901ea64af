"""The countermeasure table (the poisoning paper's Table 4): a row per (countermeasure, attack), ΔImp per
algorithm with the defended search's accuracy; each tested against the same algorithm's *undefended*
search on the same poisoned set (one-sided Welch, H0: the countermeasure does not raise accuracy; BH per
algorithm)."""
from __future__ import annotations

from naspoison.report.analysis import ALPHA, _rounded
from naspoison.report.stats import Summary, benjamini_hochberg, effect_size, welch_less

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
        undefended.setdefault((t.attack, t.budget, t.algorithm), []).append(t.accuracy)
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
            w = welch_less(u, s) if u.n else None  # undefended < defended
            row["test"] = {**(w.to_dict() if w else {"p": None, "untestable": "no undefended cells in the store"}),
                           "q": None, "significant": False}
            if u.n:
                row["effect"] = effect_size(s, u).to_dict()
            mine.append(row)
        tested = [r for r in mine if r["test"]["p"] is not None]
        for r, q in zip(tested, benjamini_hochberg([r["test"]["p"] for r in tested])):
            r["test"]["q"], r["test"]["significant"] = float(q), bool(q <= alpha)
        corrections[alg] = {"method": "Benjamini-Hochberg", "alpha": alpha, "n_tests": len(tested),
                            "untestable": len(mine) - len(tested)}
        rows += mine
    return _rounded({"baseline": {"n": base.n, "mean": base.mean, "std": base.std},
                     "algorithms": sorted({r["algorithm"] for r in rows}), "rows": rows,
                     "corrections": corrections, "test": TEST})


def _grid(t: dict) -> dict[str, dict[str, dict]]:
    from naspoison.report.render import _budget, attack_title
    from naspoison.sanitize import SANITIZERS

    grid: dict[str, dict[str, dict]] = {}
    for r in t["rows"]:
        name = f"{SANITIZERS[r['defense']].title} ({attack_title(r['attack'])}, {_budget(r['budget'])})"
        grid.setdefault(name, {})[r["algorithm"]] = r
    return grid


def _cell(r: dict | None) -> tuple[str, bool]:
    if r is None:
        return "-", False
    from naspoison.report.render import _acc, _dimp

    und = r["undefended"]["delta_imp"]
    return f"{_dimp(r)} (Acc. {_acc(r)}; undefended {'-' if und is None else f'{und:.2f}'})", r["test"]["significant"]


def notes(t: dict) -> list[str]:
    b = t["baseline"]
    out = [f"ΔImp = Acc. − random-sampling baseline ({b['mean']:.2f}, n = {b['n']})." if b["n"]
           else "No random-sampling baseline in the store: no ΔImp.",
           f"† significant: {t['test']}; Benjamini–Hochberg per algorithm, α = 0.05."]
    return out + [f"{a}: BH over {c['n_tests']} tests; {c['untestable']} untestable." for a, c in t["corrections"].items()]


def markdown_lines(t: dict) -> list[str]:
    algs = t["algorithms"]
    lines = ["", "## Poisoning countermeasures", "", "| Defense (attack, p) | " + " | ".join(f"{a} ΔImp." for a in algs) + " |",
             "|---|" + "---|" * len(algs)]
    for name, by_alg in _grid(t).items():
        cells = []
        for a in algs:
            text, sig = _cell(by_alg.get(a))
            cells.append(f"**{text}**†" if sig else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""] + [f"- {n}" for n in notes(t)]


def latex_lines(t: dict) -> list[str]:
    algs = t["algorithms"]

    def tex(s: str) -> str:
        return s.replace("%", r"\%").replace("±", r"$\pm$").replace("_", r"\_")

    out = [r"\begin{tabular}{l" + "r" * len(algs) + "}", r"\toprule",
           "Defense & " + " & ".join(tex(a) for a in algs) + r" \\", r"\midrule"]
    for name, by_alg in _grid(t).items():
        cells = []
        for a in algs:
            text, sig = _cell(by_alg.get(a))
            cells.append(rf"\textbf{{\underline{{{tex(text)}}}}}" if sig else tex(text))
        out.append(f"{tex(name)} & " + " & ".join(cells) + r" \\")
    return out + [r"\bottomrule", r"\end{tabular}"]


def console_table(t: dict):
    from rich.table import Table

    table = Table(title="Poisoning countermeasures (ΔImp.)", caption="\n".join(notes(t)), caption_justify="left")
    table.add_column("Defense (attack, p)")
    for a in t["algorithms"]:
        table.add_column(a, justify="right")
    for name, by_alg in _grid(t).items():
        cells = []
        for a in t["algorithms"]:
            text, sig = _cell(by_alg.get(a))
            cells.append(f"[bold underline]{text}[/]†" if sig else text)
        table.add_row(name, *cells)
    return table
