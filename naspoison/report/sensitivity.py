"""The metric-sensitivity table (the poisoning paper's Table 2): a row per attack, a column per
training-free metric grouped by the algorithm that uses it, mean ± std of the % change."""
from __future__ import annotations

from naspoison.analyses.sensitivity import TENAS_METRICS, sensitivity_table
from naspoison.attacks import NO_ATTACK
from naspoison.report.analysis import attack_title, budget_text
from naspoison.report.table import Column, Entry, Table, pm

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


def tables(t: dict) -> list[Table]:
    """The poisoning paper's Table 2: a row per attack, the % change per metric, grouped by the algorithm
    that uses the metric."""
    title = "Sensitivity of training-free metrics"
    if "rows" not in t:
        return [Table(title, [], [], [t["note"]])]
    ms = t["metrics"]
    rows = [[Entry(f"{attack_title(r['attack'])} ({budget_text(r['budget'])})"),
             *(Entry(pm(r["change"][m], unit="%")) for m in ms)] for r in t["rows"]]
    excluded = {f"{r['attack']}/{m}": r["change"][m]["excluded"] for r in t["rows"] for m in ms
                if r["change"][m]["excluded"]}
    notes = [t["note"]] + (["architectures left out (a value non-finite or a clean value of 0): "
                            + ", ".join(f"{k}: {v}" for k, v in excluded.items())] if excluded else [])
    return [Table(title, [Column("Poisoning attack", left=True),
                          *(Column(TITLES.get(m, m), group=t["groups"][m]) for m in ms)], rows, notes,
                  group_name="algorithm", label="sensitivity")]
