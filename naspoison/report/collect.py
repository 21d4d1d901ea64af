"""Read the store (read-only) for a list of trials: accuracies, and what is missing or corrupt."""
from __future__ import annotations

from dataclasses import dataclass, field

from naspoison.report.analysis import TrialAccuracy
from naspoison.store import CorruptRecord, ResultStore, content_key
from naspoison.suite.expand import EvasTrial, SensitivityTrial, Trial


@dataclass
class Collected:
    accuracies: list[TrialAccuracy] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)   # "stage key label"
    corrupt: list[str] = field(default_factory=list)
    checked: int = 0                                   # cell files verified
    train_keys: set[str] = field(default_factory=set)
    evas: list[dict] = field(default_factory=list)            # evas_eval rows: row, seed, arch, acc, asr
    evas_searches: list[dict] = field(default_factory=list)   # what each Evas search found
    evas_study: dict[str, list[dict]] = field(default_factory=dict)  # study kind -> {arch, score[, acc, asr]}
    evas_defenses: list[dict] = field(default_factory=list)   # row, dataset, seed, defense, its result
    sensitivity: list[dict] = field(default_factory=list)     # attack, budget, metric cell result
    ood: list[TrialAccuracy] = field(default_factory=list)    # attack = the search dataset (none: in-distribution)
    defended: list[dict] = field(default_factory=list)        # defense, attack, budget, algorithm, seed, accuracy


def collect(trials: list[Trial], store: ResultStore) -> Collected:
    out = Collected()
    seen: set[str] = set()

    def get(spec: dict, label: str):
        key = content_key(spec)
        try:
            rec = store.get(spec["stage"], key)
        except CorruptRecord as e:
            out.corrupt.append(f"{spec['stage']} {key} {label}: {e}")
            return None
        if rec is None:
            out.missing.append(f"{spec['stage']} {key[:16]} {label}")
        elif key not in seen:
            seen.add(key)
            out.checked += 1
        return rec

    for t in trials:
        for upstream in (t.poison, getattr(t, "sanitize", None)):
            if upstream is not None:
                get(upstream, t.label)
        found = get(t.search, t.label) if t.search is not None else None
        if t.search is not None and found is None:
            out.missing.append(f"{'backdoor' if isinstance(t, EvasTrial) else 'train'} (after search) {t.label}")
            continue
        cells = t.after_search(found.result if found else None)
        out.train_keys |= {content_key(c) for c in cells}
        results = [get(c, t.label) for c in cells]
        trained = results[-1]
        if isinstance(t, SensitivityTrial):
            if trained is not None:
                out.sensitivity.append({"attack": t.attack, "budget": t.budget, "result": trained.result})
            continue
        if isinstance(t, EvasTrial):
            if found is not None and t.family == "evas_search":
                r = found.result
                out.evas_searches.append({"seed": t.seed, "arch": r["arch"], "score": r["score"],
                                          "visited": len(r["history"]), "distinct_archs": r["distinct_archs"]})
            if t.defense:
                if trained is not None:
                    out.evas_defenses.append({"row": t.algorithm, "dataset": t.dataset["name"], "seed": t.seed,
                                              "defense": t.defense, "result": defense_summary(trained.result)})
                continue
            if t.study:
                if all(r is not None for r in results):
                    out.evas_study.setdefault(t.study, []).extend(_study_rows(results, found))
                continue
            if trained is not None and t.family == "evas_eval":
                out.evas.append({"row": t.algorithm, "seed": t.seed, "arch": trained.result["arch"],
                                 "dataset": t.dataset["name"],
                                 "scenario": t.scenario, "fraction": t.fraction,
                                 "acc": trained.result["acc"], "asr": trained.result["asr"]})
            continue
        if trained is None:
            continue
        acc = 100.0 * trained.result["test_acc"]
        if t.family == "random_baseline":
            out.baseline.append(acc)
        elif t.family == "defended_search":
            out.defended.append({"defense": t.defense, "attack": t.attack, "budget": t.budget,
                                 "algorithm": t.algorithm, "seed": t.seed, "accuracy": acc})
        elif t.family == "ood_search":
            out.ood.append(TrialAccuracy(t.attack, t.budget, t.algorithm, t.seed, acc))
        else:
            out.accuracies.append(TrialAccuracy(t.attack, t.budget, t.algorithm, t.seed, acc))
    return out


def _study_rows(results: list, found) -> list[dict]:
    """Score cells, each followed by its backdoor cell where the study attacks too."""
    rows = []
    for rec in results:
        r = rec.result
        if rec.stage == "evas_score":
            rows.append({"arch": r["arch"], "score": r["score"]})
        else:
            rows[-1].update(acc=r["acc"], asr=r["asr"])
    if found is not None:
        for row in rows:
            row["found"] = row["arch"] == found.result["arch"]
    return rows


def defense_summary(r: dict) -> dict:
    """The numbers the Evas Tables 4-5 layout shows (the full result stays in the cell)."""
    if r["defense"] == "neural_cleanse":
        return {"target_index": r["target_index"], "target_flagged": r["target_flagged"], "flagged": r["flagged"]}
    if r["defense"] == "strip":
        return {"auroc": r["auroc"], "auroc_all": r.get("auroc_all"), "auroc_successful": r.get("auroc_successful")}
    return {"before": r["before"], "chosen": r["chosen"], "after": r["after_finetune"]}
