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


SCENARIO_TITLES = {"finetune_clean": "Fine-tuning with clean data (Evas Table 2)",
                   "retrain": "Re-training from scratch, generator fixed (Evas Table 3)",
                   "poisoned_finetune": "Fine-tuning with poisoned data (Evas Figure 6)"}


def _rows(records: list[dict]) -> list[dict]:
    rows = []
    for name in dict.fromkeys(r["row"] for r in records):  # suite order
        mine = [r for r in records if r["row"] == name]
        rows.append({"row": name, "title": row_title(name), "arch": mine[0]["arch"], "n": len(mine),
                     "acc": _ms([100 * r["acc"] for r in mine]), "asr": _ms([100 * r["asr"] for r in mine])})
    return rows


def evas_table(records: list[dict], searches: list[dict]) -> dict:
    """``records``: {row, seed, arch, scenario, fraction, acc, asr} of evas_eval trials (scenario None: the
    attack as trained, Table 1); ``searches``: {seed, arch, score, ...}."""
    plain = [r for r in records if r.get("scenario") is None]
    treated = [r for r in records if r.get("scenario") is not None]
    scenarios = []
    for sc, frac in dict.fromkeys((r["scenario"], r["fraction"]) for r in treated):
        title = SCENARIO_TITLES.get(sc, sc) + ("" if frac is None else f", {100 * frac:g} % poisoned")
        scenarios.append({"scenario": sc, "fraction": frac, "title": title,
                          "rows": _rows([r for r in treated if (r["scenario"], r["fraction"]) == (sc, frac)])})
    out = {"rows": _rows(plain), "searches": searches,
            "note": "ACC: clean test accuracy of the frozen model; ASR: triggered test images of non-target classes "
                    "classified as the target; mean ± sd over training seeds, percent"}
    if scenarios:
        out["scenarios"] = scenarios
    return out


def _md_table(rows: list[dict]) -> list[str]:
    out = ["| architecture | ACC (%) | ASR (%) | seeds | cell |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['title']} | {r['acc']['mean']:.2f} ± {r['acc']['std']:.2f} | "
                   f"{r['asr']['mean']:.2f} ± {r['asr']['std']:.2f} | {r['n']} | `{r['arch']}` |")
    return out


def markdown_lines(t: dict) -> list[str]:
    out = ["", "## Evas: ACC and ASR per architecture (Evas Table 1)", "", *_md_table(t["rows"])]
    for sc in t.get("scenarios", []):
        out += ["", f"### {sc['title']}", "", *_md_table(sc["rows"])]
    for s in t["searches"]:
        out.append("")
        out.append(f"Evas search seed {s['seed']}: score {s['score']:.4g} after {s['visited']} visits "
                   f"({s['distinct_archs']} distinct cells), found `{s['arch']}`")
    out += ["", t["note"] + "."]
    return out


def latex_lines(t: dict) -> list[str]:
    out = []
    for title, rows in [("Evas Table 1", t["rows"])] + [(sc["title"], sc["rows"]) for sc in t.get("scenarios", [])]:
        out += [f"% {title}", r"\begin{tabular}{lrr}", r"\toprule", r"architecture & ACC (\%) & ASR (\%) \\",
                r"\midrule"]
        for r in rows:
            out.append(f"{r['title']} & {r['acc']['mean']:.2f} $\\pm$ {r['acc']['std']:.2f} & "
                       f"{r['asr']['mean']:.2f} $\\pm$ {r['asr']['std']:.2f} \\\\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return out[:-1]


