"""The poisoning table in every output format, laid out like the paper's Table 1:
rows = (attack, budget), a column pair (Acc., ΔImp) per algorithm, significant cells marked.

Marks: bold + underline in LaTeX and on a terminal, ``**…**†`` in Markdown, a ``significant``
column in CSV. Untestable cells and the number of tests per correction are stated under the table.
"""
from __future__ import annotations

import csv
import io
import json

from naspoison.attacks import ATTACKS, NO_ATTACK

MARK = "†"


def attack_title(name: str) -> str:
    if name == NO_ATTACK:
        return "No attack"
    cls = ATTACKS.get(name)
    return getattr(cls, "title", name.replace("_", " ").capitalize())


def _budget(b) -> str:
    return "-" if b is None else f"{b * 100:g}%"


def _grid(report: dict):
    """(attack, budget) -> algorithm -> row, in the paper's row order."""
    grid: dict[tuple, dict[str, dict]] = {}
    for r in report["rows"]:
        grid.setdefault((r["attack"], r["budget"]), {})[r["algorithm"]] = r
    return grid


def _acc(r: dict) -> str:
    return "nan" if r["mean"] is None else f"{r['mean']:.2f} ± {r['std']:.2f}"


def _dimp(r: dict) -> str:
    return "-" if r.get("delta_imp") is None else f"{r['delta_imp']:.2f}"


def _sig(r: dict) -> bool:
    return bool(r.get("test", {}).get("significant"))


def footnotes(report: dict) -> list[str]:
    b = report["baseline"]
    notes = [f"Random-sampling baseline: {b['mean']:.2f} ± {b['std']:.2f} (n = {b['n']}); ΔImp = Acc. − baseline."
             if b["n"] else "Random-sampling baseline: none in the store, so no ΔImp."]
    notes.append(f"{MARK} significant: {report['test']}; Benjamini–Hochberg per algorithm, α = "
                 f"{next(iter(report['corrections'].values()), {}).get('alpha', 0.05)}.")
    for alg, c in report["corrections"].items():
        notes.append(f"{alg}: BH over {c['n_tests']} tests; {c['untestable']} cells untestable.")
    for r in report["rows"]:
        reason = r.get("test", {}).get("untestable")
        if reason:
            notes.append(f"untestable: {attack_title(r['attack'])} {_budget(r['budget'])} × {r['algorithm']}: {reason}")
    tested = [r for r in report["rows"] if r.get("test") and not r["test"].get("untestable")]
    if tested and not any(r["test"].get("significant") for r in tested):
        # said outright, so that a small run (the demo) is not read as evidence of robustness
        notes.append(f"No attack significantly lowered any algorithm's accuracy here ({len(tested)} tests): at this "
                     f"scale (seeds, epochs, data) the run shows the pipeline, not the paper's effects.")
    return notes


def to_json(report: dict) -> str:
    return json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n"


def to_csv(report: dict) -> str:
    """The poisoning rows (the Evas table is in the JSON, Markdown and LaTeX reports)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["attack", "budget", "algorithm", "n", "acc_mean", "acc_std", "delta_imp", "t", "df", "p", "q",
                "significant", "untestable", "diff", "ci_low", "ci_high", "hedges_g"])
    for r in report.get("rows", []):
        t, e = r.get("test", {}), r.get("effect", {})
        w.writerow([r["attack"], "" if r["budget"] is None else r["budget"], r["algorithm"], r["n"], r["mean"],
                    r["std"], r["delta_imp"], t.get("t"), t.get("df"), t.get("p"), t.get("q"),
                    t.get("significant", ""), t.get("untestable") or "", e.get("diff"), e.get("ci_low"),
                    e.get("ci_high"), e.get("hedges_g")])
    return buf.getvalue()


def _evas_md(report: dict) -> list[str]:
    """The sections after the poisoning table: Evas, out-of-distribution search, metric sensitivity."""
    from naspoison.report import defended, evas, ood, sensitivity

    return ((evas.markdown_lines(report["evas"]) if "evas" in report else [])
            + (defended.markdown_lines(report["defended"]) if "defended" in report else [])
            + (ood.markdown_lines(report["ood"]) if "ood" in report else [])
            + (sensitivity.markdown_lines(report["sensitivity"]) if "sensitivity" in report else []))


def _has_poisoning_rows(report: dict) -> bool:
    """A suite without the poisoning family (e.g. only ood_search) has no Table 1 to print."""
    return "algorithms" in report and bool(report.get("rows"))


def to_markdown(report: dict) -> str:
    if not _has_poisoning_rows(report):  # an Evas-only selection, or only analyses
        return "\n".join(_evas_md(report)).lstrip() + "\n"
    algs = report["algorithms"]
    head = "| Poisoning attack | p | " + " | ".join(f"{a} Acc. | {a} ΔImp." for a in algs) + " |"
    sep = "|---|---|" + "---|---|" * len(algs)
    lines = [head, sep]
    for (attack, budget), by_alg in _grid(report).items():
        cells = []
        for a in algs:
            r = by_alg.get(a)
            if r is None:
                cells += ["-", "-"]
            elif _sig(r):
                cells += [f"**{_acc(r)}**{MARK}", f"**{_dimp(r)}**{MARK}"]
            else:
                cells += [_acc(r), _dimp(r)]
        lines.append(f"| {attack_title(attack)} | {_budget(budget)} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in footnotes(report)] + _evas_md(report)) + "\n"


def to_latex(report: dict) -> str:
    if not _has_poisoning_rows(report):
        return "\n".join(_extra_latex(report)).lstrip() + "\n"
    algs = report["algorithms"]

    def tex(s: str) -> str:
        return s.replace("%", r"\%").replace("±", r"$\pm$").replace("_", r"\_")

    def mark(s: str, sig: bool) -> str:
        return rf"\textbf{{\underline{{{s}}}}}" if sig else s

    out = [r"\begin{tabular}{ll" + "rr" * len(algs) + "}", r"\toprule",
           r"Poisoning attack & $p$ & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{tex(a)}}}" for a in algs) + r" \\",
           " ".join(rf"\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}" for i in range(len(algs))),
           " & & " + " & ".join(r"Acc. & $\Delta$Imp." for _ in algs) + r" \\", r"\midrule"]
    for (attack, budget), by_alg in _grid(report).items():
        cells = []
        for a in algs:
            r = by_alg.get(a)
            if r is None:
                cells += ["-", "-"]
            else:
                cells += [mark(tex(_acc(r)), _sig(r)), mark(_dimp(r), _sig(r))]
        out.append(f"{tex(attack_title(attack))} & {tex(_budget(budget))} & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out + _extra_latex(report)) + "\n"


def _extra_latex(report: dict) -> list[str]:
    from naspoison.report import defended, evas, ood, sensitivity

    out = [""] + evas.latex_lines(report["evas"]) if "evas" in report else []
    out += [""] + defended.latex_lines(report["defended"]) if "defended" in report else []
    out += [""] + ood.latex_lines(report["ood"]) if "ood" in report else []
    return out + ([""] + sensitivity.latex_lines(report["sensitivity"]) if "sensitivity" in report else [])


def _evas_console(t: dict) -> list:
    from rich.table import Table

    tables = []
    for title, rows in [("Evas: ACC and ASR per architecture", t["rows"])] + [(sc["title"], sc["rows"])
                                                                            for sc in t.get("scenarios", [])]:
        table = Table(title=title)
        for col in ("dataset", "architecture", "ACC (%)", "ASR (%)", "seeds", "cell"):
            table.add_column(col, justify="left" if col in ("dataset", "architecture", "cell") else "right")
        for r in rows:
            table.add_row(str(r["dataset"]), r["title"], f"{r['acc']['mean']:.2f} ± {r['acc']['std']:.2f}",
                          f"{r['asr']['mean']:.2f} ± {r['asr']['std']:.2f}", str(r["n"]), r["arch"])
        tables.append(table)
    tables[-1].caption, tables[-1].caption_justify = t["note"], "left"
    return tables


def to_console(report: dict, title: str = "Robustness of NAS to data poisoning", compact: bool = False):
    """``compact``: the poisoning table one row per (attack, budget, algorithm), five columns, for a narrow
    terminal (the wide layout wraps every row into three lines at 80 columns and truncates names)."""
    from rich.console import Group

    table = _poisoning_console_long if compact else _poisoning_console
    parts = [table(report, title)] if _has_poisoning_rows(report) else []
    if "evas" in report:
        parts += _evas_console(report["evas"])
    if "defended" in report:
        from naspoison.report import defended

        parts.append(defended.console_table(report["defended"]))
    if "ood" in report:
        from naspoison.report import ood

        parts.append(ood.console_table(report["ood"]))
    if "sensitivity" in report:
        from naspoison.report.sensitivity import console_table

        parts.append(console_table(report["sensitivity"]))
    return Group(*parts)


def _poisoning_console(report: dict, title: str):
    from rich.table import Table

    algs = report["algorithms"]
    table = Table(title=title, caption="\n".join(footnotes(report)), caption_justify="left")
    table.add_column("Poisoning attack")
    table.add_column("p", justify="right")
    for a in algs:
        table.add_column(f"{a}\nAcc.", justify="right")
        table.add_column(f"{a}\nΔImp.", justify="right")
    for (attack, budget), by_alg in _grid(report).items():
        cells = []
        for a in algs:
            r = by_alg.get(a)
            if r is None:
                cells += ["-", "-"]
            elif _sig(r):
                cells += [f"[bold underline]{_acc(r)}[/]{MARK}", f"[bold underline]{_dimp(r)}[/]{MARK}"]
            else:
                cells += [_acc(r), _dimp(r)]
        table.add_row(attack_title(attack), _budget(budget), *cells)
    return table


def _poisoning_console_long(report: dict, title: str):
    from rich.table import Table

    table = Table(title=title, caption="\n".join(footnotes(report)), caption_justify="left")
    for col, just in (("Poisoning attack", "left"), ("p", "right"), ("algorithm", "left"), ("Acc.", "right"),
                      ("ΔImp.", "right")):
        table.add_column(col, justify=just, no_wrap=True)
    for (attack, budget), by_alg in _grid(report).items():
        first = True
        for a in report["algorithms"]:
            r = by_alg.get(a)
            if r is None:
                continue
            acc, dimp = (f"[bold underline]{_acc(r)}[/]{MARK}", f"[bold underline]{_dimp(r)}[/]{MARK}") if _sig(r) \
                else (_acc(r), _dimp(r))
            table.add_row(attack_title(attack) if first else "", _budget(budget) if first else "", a, acc, dimp,
                          end_section=a == [x for x in report["algorithms"] if x in by_alg][-1])
            first = False
    return table


FORMATS = {"json": to_json, "csv": to_csv, "md": to_markdown, "tex": to_latex}
