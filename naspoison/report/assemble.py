"""A suite profile's report from the store: collect its cells, analyse each family present, write every format.
What ``naspoison report``, ``bench`` (after a run) and ``bench --check`` share; read-only, torch-free."""
from __future__ import annotations

from pathlib import Path

from naspoison.store import ResultStore


def assemble(trials, store: ResultStore):
    """``(collected, report)``: the cells of ``trials`` read from ``store`` (missing and corrupt ones listed in
    ``collected``) and the report dict (the committed ``report.json``) of the families present."""
    from naspoison.report.analysis import analyse
    from naspoison.report.collect import collect

    col = collect(trials, store)
    report = analyse(col.accuracies, col.baseline) if any(t.family in ("poisoning", "random_baseline") for t in trials) else {}
    if col.evas or col.evas_searches or col.evas_study or col.evas_defenses:
        from naspoison.report.evas import evas_table

        report["evas"] = evas_table(col.evas, col.evas_searches, col.evas_study, col.evas_defenses)
    if col.defended:
        from naspoison.report.defended import defended_section

        report["defended"] = defended_section(col.defended, col.accuracies, col.baseline)
    if col.ood:
        from naspoison.report.ood import ood_section

        report["ood"] = ood_section(col.ood, col.baseline, trials)
    if col.sensitivity:
        from naspoison.report.sensitivity import sensitivity_section

        report["sensitivity"] = sensitivity_section(col.sensitivity)
    return col, report


def write(report: dict, out: Path) -> list[Path]:
    """``report.{json,csv,md,tex}`` and the plots (those matplotlib and the report's sections allow) in ``out``."""
    from naspoison.report.render import FORMATS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, fn in FORMATS.items():
        p = out / f"report.{ext}"
        p.write_text(fn(report), encoding="utf-8")
        paths.append(p)
    from naspoison.report import plots

    # each is None without matplotlib or without its section in the report
    pictures = [plots.score_vs_attack(report, out / "evas_score_vs_attack.png"),
                plots.delta_imp(report, out / "delta_imp.png"),
                plots.metric_sensitivity(report, out / "metric_sensitivity.png")]
    return paths + [p for p in pictures if p]


def print_console(con, report: dict) -> None:
    """The report's tables on a rich console; the compact layout when the wide one does not fit the terminal."""
    from rich.measure import Measurement

    from naspoison.report.render import to_console

    wide = to_console(report)
    if Measurement.get(con, con.options.update_width(10**6), wide).maximum > con.width:
        wide = to_console(report, compact=True)
    con.print(wide)
