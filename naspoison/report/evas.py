"""The Evas section: Table 1 (ACC and ASR per architecture), Tables 2-3 and Figure 6 (the victims' scenarios),
what each Evas search found, Tables 4-5 (backdoor defenses, each laid out by its own class) and the score study
(Figure 2, Figure 5, appendix A.3)."""
from __future__ import annotations

import numpy as np

from naspoison.backdoor.scenarios import SCENARIOS
from naspoison.defenses import DEFENSES
from naspoison.defenses.base import mean_sd
from naspoison.report.table import Column, Entry, Table, pm

ROW_TITLES = {"evas": "Evas", "resnet18": "ResNet18"}


def row_title(name: str) -> str:
    if name.startswith("random_"):
        return "Random " + "I" * int(name.split("_")[1]) if int(name.split("_")[1]) <= 3 else f"Random {name[7:]}"
    return ROW_TITLES.get(name, name)


def _rows(records: list[dict]) -> list[dict]:
    rows = []
    for ds, name in dict.fromkeys((r.get("dataset"), r["row"]) for r in records):  # suite order
        mine = [r for r in records if (r.get("dataset"), r["row"]) == (ds, name)]
        rows.append({"dataset": ds, "row": name, "title": row_title(name), "arch": mine[0]["arch"], "n": len(mine),
                     "acc": mean_sd([100 * r["acc"] for r in mine]), "asr": mean_sd([100 * r["asr"] for r in mine])})
    return rows


def _spearman(x: list[float], y: list[float]) -> dict:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": None, "p": None, "n": len(x), "why": "fewer than 3 points or a constant variable"}
    rho, p = spearman(x, y)
    return {"rho": float(rho), "p": float(p), "n": len(x)}


def average_ranks(v) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (``scipy.stats.rankdata``'s default)."""
    v = np.asarray(v)
    order = np.argsort(v, kind="mergesort")
    first = np.r_[True, v[order][1:] != v[order][:-1]]       # each run of equal values starts here
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(v)])
    ranks = np.empty(len(v))
    ranks[order] = (starts + (counts + 1) / 2.0)[np.cumsum(first) - 1]
    return ranks


def spearman(x, y) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value (t approximation, n - 2 degrees of freedom), the same
    operations as ``scipy.stats.spearmanr``, which the report does not import: scipy.stats alone takes
    about half a second to load, longer than the rest of ``report``."""
    from scipy import special

    ranked = np.column_stack((average_ranks(x), average_ranks(y)))
    rs = np.corrcoef(ranked, rowvar=False)
    dof = len(ranked) - 2
    with np.errstate(divide="ignore"):
        t = rs * np.sqrt((dof / ((rs + 1.0) * (1.0 - rs))).clip(0))
    p = 2 * special.stdtr(dof, -np.abs(t))
    return rs[1, 0], p[1, 0]


def study_section(study: dict[str, list[dict]]) -> dict:
    """Figure 2 (score vs ASR/ACC of sampled cells, Spearman), Figure 5 (landscape), appendix A.3 (enumeration)."""
    out: dict = {}
    if study.get("sample"):
        rows = study["sample"]
        out["sample"] = {"rows": rows,
                         "spearman_score_asr": _spearman([r["score"] for r in rows], [r["asr"] for r in rows]),
                         "spearman_score_acc": _spearman([r["score"] for r in rows], [r["acc"] for r in rows])}
    if study.get("landscape"):
        out["landscape"] = study["landscape"]
    if study.get("enumeration"):
        out["enumeration"] = study["enumeration"]
    return out


def defense_section(records: list[dict]) -> dict:
    """Per backdoor defense, per dataset and row, its numbers over training seeds (the defense's ``aggregate``):
    Evas Table 4 (detection) and Table 5 (Fine-Pruning) for the shipped ones."""
    out: dict = {}
    keys = list(dict.fromkeys((r["dataset"], r["row"]) for r in records))
    for name in dict.fromkeys(r["defense"] for r in records):
        rows = []
        for ds, row in keys:
            mine = [r["result"] for r in records if (r["dataset"], r["row"], r["defense"]) == (ds, row, name)]
            if mine:
                rows.append({"dataset": ds, "row": row, "title": row_title(row), "n": len(mine),
                             **DEFENSES[name].aggregate(mine)})
        out[name] = rows
    return out


def evas_table(records: list[dict], searches: list[dict], study: dict | None = None,
               defenses: list[dict] | None = None) -> dict:
    """``records``: {row, seed, arch, scenario, fraction, acc, asr} of evas_eval trials (scenario None: the
    attack as trained, Table 1); ``searches``: {seed, arch, score, ...}."""
    plain = [r for r in records if r.get("scenario") is None]
    treated = [r for r in records if r.get("scenario") is not None]
    scenarios = []
    for sc, frac in dict.fromkeys((r["scenario"], r["fraction"]) for r in treated):
        title = (SCENARIOS[sc].title if sc in SCENARIOS else sc) + ("" if frac is None else f", {100 * frac:g} % poisoned")
        scenarios.append({"scenario": sc, "fraction": frac, "title": title,
                          "rows": _rows([r for r in treated if (r["scenario"], r["fraction"]) == (sc, frac)])})
    out = {"rows": _rows(plain), "searches": searches,
            "note": "ACC: clean test accuracy of the frozen model; ASR: triggered test images of non-target classes "
                    "classified as the target; mean ± sd over training seeds, percent"}
    if scenarios:
        out["scenarios"] = scenarios
    if study:
        out["study"] = study_section(study)
    if defenses:
        out["defenses"] = defense_section(defenses)
    return out


# ----------------------------------------------------------------------------- the tables
def tables(t: dict) -> list[Table]:
    """Evas Table 1 (and Tables 2-3 and Figure 6's fine-tuning per treated scenario), the searches, Tables 4-5
    (backdoor defenses), the score study (Figure 2, Figure 5, appendix A.3)."""
    out = [_per_architecture("Evas: ACC and ASR per architecture (Evas Table 1)", t["rows"], [t["note"] + "."],
                             with_cells=True)] if t["rows"] else []
    out += [_per_architecture(sc["title"], sc["rows"], [], with_cells=False) for sc in t.get("scenarios", [])]
    if t["searches"]:
        out.append(Table("Evas search", [Column("seed"), Column("score"), Column("visits"), Column("distinct cells"),
                                         Column("found cell", left=True)],
                         [[Entry(str(s["seed"])), Entry(f"{s['score']:.4g}"), Entry(str(s["visited"])),
                           Entry(str(s["distinct_archs"])), Entry(s["arch"], code=True)] for s in t["searches"]]))
    return out + _defense_tables(t.get("defenses", {})) + _study_tables(t.get("study", {}))


def _per_architecture(title: str, rows: list[dict], notes: list[str], with_cells: bool) -> Table:
    """The paper's layout: architectures as columns, per dataset a row for ACC and ASR ("mean ± sd"), the
    number of seeds and (Table 1) each architecture's cell."""
    titles = list(dict.fromkeys(r["title"] for r in rows))
    lines = [("ACC (%)", lambda r: Entry(pm(r["acc"]))), ("ASR (%)", lambda r: Entry(pm(r["asr"]))),
             ("seeds", lambda r: Entry(str(r["n"])))] + ([("cell", lambda r: Entry(r["arch"], code=True))]
                                                          if with_cells else [])
    body = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        by = {r["title"]: r for r in rows if r["dataset"] == ds}
        body += [[Entry(str(ds) if i == 0 else ""), Entry(name), *(f(by[a]) if a in by else Entry("-") for a in titles)]
                 for i, (name, f) in enumerate(lines)]
    return Table(title, [Column("dataset", left=True), Column("", left=True), *(Column(a) for a in titles)], body,
                 notes)


def _defense_tables(d: dict) -> list[Table]:
    """One table per ``table`` the defenses name (in the registry's order), a row per architecture, the columns
    of each defense that shares it; a defense this installation does not know is left out."""
    out = []
    present = [cls for name, cls in DEFENSES.items() if name in d]
    for title in dict.fromkeys(cls.table for cls in present):
        group = [cls for cls in present if cls.table == title]
        by = [{(r["dataset"], r["row"]): r for r in d[cls.name]} for cls in group]
        rows = []
        for key in dict.fromkeys(k for entries in by for k in entries):
            first = next(entries[key] for entries in by if key in entries)
            rows.append([Entry(str(key[0])), Entry(first["title"]),
                         *(Entry(text) for cls, entries in zip(group, by) for _, text in cls.columns(entries.get(key)))])
        headers = [h for cls in group for h, _ in cls.columns(None)]
        notes = [cls.note for cls in group if cls.note]
        out.append(Table(title, [Column("dataset", left=True), Column("architecture", left=True),
                                 *(Column(h) for h in headers)], rows, ["; ".join(notes) + "."] if notes else []))
    return out


def _fmt_rho(c: dict) -> str:
    return "undefined" if c["rho"] is None else f"{c['rho']:+.3f} (p = {c['p']:.3g}, n = {c['n']})"


def _attacked(r: dict) -> list[Entry]:
    return [Entry(f"{r['score']:.4g}"), Entry(f"{100 * r['acc']:.2f}"), Entry(f"{100 * r['asr']:.2f}")]


def _study_tables(st: dict) -> list[Table]:
    out = []
    scored = [Column("score"), Column("ACC (%)"), Column("ASR (%)")]
    if "sample" in st:
        s = st["sample"]
        out.append(Table("Score vs attack (Evas Figure 2)", [Column("cell", left=True), *scored],
                         [[Entry(r["arch"], code=True), *_attacked(r)] for r in sorted(s["rows"], key=lambda r: r["score"])],
                         [(f"Spearman ρ of score with ASR {_fmt_rho(s['spearman_score_asr'])}; with ACC "
                           f"{_fmt_rho(s['spearman_score_acc'])} (lower score = predicted more exploitable: a negative "
                           "ρ with ASR agrees with the paper).")]))
    if "landscape" in st:
        from naspoison.spaces import nb201

        rows, ops = st["landscape"], nb201.OPS
        found = next((r["arch"] for r in rows if r.get("found")), None)
        out.append(Table("Score landscape around the found cell (Evas Figure 5)",
                         [Column("first edge", left=True), *(Column(op) for op in ops)],
                         [[Entry(a), *(Entry(f"{r['score']:.4g}" + ("*" if r.get("found") else ""))
                                       for r in rows[i * len(ops):(i + 1) * len(ops)])] for i, a in enumerate(ops)],
                         [f"Rows: the op on the first edge, columns: the op on the second; * the found cell {found}."]))
    if "enumeration" in st:
        out.append(Table("conv1x1 / conv3x3 on the found cell's conv edges (Evas appendix A.3)",
                         [Column("cell", left=True), *scored, Column("found", left=True)],
                         [[Entry(r["arch"], code=True), *_attacked(r), Entry("*" if r.get("found") else "")]
                          for r in st["enumeration"]]))
    return out
