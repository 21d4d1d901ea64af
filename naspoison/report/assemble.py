"""A suite profile's report from the store: collect its cells, analyse each family present, write every format.
What ``naspoison report``, ``bench`` (after a run) and ``bench --check`` share; read-only, torch-free."""
from __future__ import annotations

from pathlib import Path

from naspoison.store import ResultStore


def assemble(trials, store: ResultStore):
    """``(collected, report)``: the cells of ``trials`` read from ``store`` (missing and corrupt ones listed in
    ``collected``) and the report dict (the committed ``report.json``): every family's sections, in the
    registry's order."""
    from naspoison.families import FAMILIES
    from naspoison.report.collect import collect

    col = collect(trials, store)
    report: dict = {}
    for fam in FAMILIES.values():
        sections = fam.sections(col)
        if clash := report.keys() & sections.keys():
            raise ValueError(f"family {fam.name} writes report sections another family wrote: {sorted(clash)}")
        report.update(sections)
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
    """The report's tables on a rich console, each folded into its compact layout where the terminal is too
    narrow for it (render.to_console)."""
    from naspoison.report.render import to_console

    con.print(to_console(report))
