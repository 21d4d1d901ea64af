"""The metric-sensitivity table (the poisoning paper's Table 2): a row per attack, a column per
training-free metric grouped by the algorithm that uses it, mean ± std of the % change."""
from __future__ import annotations

from naspoison.analyses.sensitivity import TENAS_METRICS, sensitivity_table
from naspoison.attacks import NO_ATTACK

TITLES = {"ntk_cond": "κ_NTK", "linear_regions": "R"}


def sensitivity_section(cells: list[dict]) -> dict:
    """``cells``: {attack, budget, result} of every stored metric cell, the clean one among them."""
    clean = next((c["result"] for c in cells if c["attack"] == NO_ATTACK), None)
    if clean is None:
        return {"note": "the clean metric cell is not in the store yet: no changes to report"}
    table = sensitivity_table(clean, [c for c in cells if c["attack"] != NO_ATTACK])
    table["groups"] = {m: "TE-NAS" if m in TENAS_METRICS else "RoBoT" for m in table["metrics"]}
    table["note"] = (f"Change of each training-free metric, poisoned vs clean: 100·(poisoned − clean)/|clean| on "
                     f"the same {table['samples']} sample indices, mean ± std over {table['archs']} random "
                     "architectures at the same initialisation.")
    return table


def cell(c: dict) -> str:
    if c["mean"] is None:
        return "-"
    return f"{c['mean']:.2f} ± {c['std']:.2f}%" if c["std"] is not None else f"{c['mean']:.2f}%"


def _title(m: str) -> str:
    return TITLES.get(m, m)


def _row_title(r: dict) -> str:
    from naspoison.report.render import _budget, attack_title

    return f"{attack_title(r['attack'])} ({_budget(r['budget'])})"


def markdown_lines(t: dict) -> list[str]:
    if "rows" not in t:
        return ["", "## Sensitivity of training-free metrics", "", t["note"]]
    ms = t["metrics"]
    lines = ["", "## Sensitivity of training-free metrics", "",
             "| Poisoning attack | " + " | ".join(f"{t['groups'][m]} {_title(m)}" for m in ms) + " |",
             "|---|" + "---|" * len(ms)]
    for r in t["rows"]:
        lines.append(f"| {_row_title(r)} | " + " | ".join(cell(r["change"][m]) for m in ms) + " |")
    excluded = {f"{r['attack']}/{m}": r["change"][m]["excluded"] for r in t["rows"] for m in ms
                if r["change"][m]["excluded"]}
    lines += ["", f"- {t['note']}"]
    if excluded:
        lines.append("- architectures left out (a value non-finite or a clean value of 0): "
                     + ", ".join(f"{k}: {v}" for k, v in excluded.items()))
    return lines


def latex_lines(t: dict) -> list[str]:
    if "rows" not in t:
        return []
    ms = t["metrics"]

    def tex(s: str) -> str:
        return s.replace("%", r"\%").replace("±", r"$\pm$").replace("_", r"\_").replace("κ_NTK", r"$\kappa_{\text{NTK}}$")

    out = [r"\begin{tabular}{l" + "r" * len(ms) + "}", r"\toprule",
           "Poisoning attack & " + " & ".join(tex(f"{t['groups'][m]} {_title(m)}") for m in ms) + r" \\", r"\midrule"]
    out += [tex(_row_title(r)) + " & " + " & ".join(tex(cell(r["change"][m])) for m in ms) + r" \\" for r in t["rows"]]
    return out + [r"\bottomrule", r"\end{tabular}"]


def console_table(t: dict):
    from rich.table import Table

    table = Table(title="Sensitivity of training-free metrics (% change, poisoned vs clean)", caption=t["note"],
                  caption_justify="left")
    if "rows" not in t:
        return table
    table.add_column("Poisoning attack")
    for m in t["metrics"]:
        table.add_column(f"{t['groups'][m]}\n{_title(m)}", justify="right")
    for r in t["rows"]:
        table.add_row(_row_title(r), *(cell(r["change"][m]) for m in t["metrics"]))
    return table
