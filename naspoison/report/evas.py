"""The Evas table (Evas Table 1: ACC and ASR per architecture on the profile's dataset) from the
backdoor cells, plus what each Evas search found."""
from __future__ import annotations

import statistics

ROW_TITLES = {"evas": "Evas", "resnet18": "ResNet18"}


def row_title(name: str) -> str:
    if name.startswith("random_"):
        return "Random " + "I" * int(name.split("_")[1]) if int(name.split("_")[1]) <= 3 else f"Random {name[7:]}"
    return ROW_TITLES.get(name, name)


def _ms(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def evas_table(records: list[dict], searches: list[dict]) -> dict:
    """``records``: {row, seed, arch, acc, asr} of evas_eval trials; ``searches``: {seed, arch, score, ...}."""
    rows = []
    for name in dict.fromkeys(r["row"] for r in records):  # suite order
        mine = [r for r in records if r["row"] == name]
        rows.append({"row": name, "title": row_title(name), "arch": mine[0]["arch"], "n": len(mine),
                     "acc": _ms([100 * r["acc"] for r in mine]), "asr": _ms([100 * r["asr"] for r in mine])})
    return {"rows": rows, "searches": searches,
            "note": "ACC: clean test accuracy of the frozen model; ASR: triggered test images of non-target classes "
                    "classified as the target; mean ± sd over training seeds, percent"}


def markdown_lines(t: dict) -> list[str]:
    out = ["", "## Evas: ACC and ASR per architecture (Evas Table 1)", "",
           "| architecture | ACC (%) | ASR (%) | seeds | cell |", "|---|---|---|---|---|"]
    for r in t["rows"]:
        out.append(f"| {r['title']} | {r['acc']['mean']:.2f} ± {r['acc']['std']:.2f} | "
                   f"{r['asr']['mean']:.2f} ± {r['asr']['std']:.2f} | {r['n']} | `{r['arch']}` |")
    for s in t["searches"]:
        out.append("")
        out.append(f"Evas search seed {s['seed']}: score {s['score']:.4g} after {s['visited']} visits "
                   f"({s['distinct_archs']} distinct cells), found `{s['arch']}`")
    out += ["", t["note"] + "."]
    return out


def latex_lines(t: dict) -> list[str]:
    out = [r"\begin{tabular}{lrr}", r"\toprule", r"architecture & ACC (\%) & ASR (\%) \\", r"\midrule"]
    for r in t["rows"]:
        out.append(f"{r['title']} & {r['acc']['mean']:.2f} $\\pm$ {r['acc']['std']:.2f} & "
                   f"{r['asr']['mean']:.2f} $\\pm$ {r['asr']['std']:.2f} \\\\")
    return out + [r"\bottomrule", r"\end{tabular}"]


def csv_rows(t: dict) -> list[list]:
    return [["evas", r["row"], r["arch"], r["n"], r["acc"]["mean"], r["acc"]["std"], r["asr"]["mean"], r["asr"]["std"]]
            for r in t["rows"]]
