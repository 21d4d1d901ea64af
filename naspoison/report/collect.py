"""Read the store (read-only) for a list of trials: each family's rows, and what is missing or corrupt."""
from __future__ import annotations

from naspoison.families import FAMILIES, Collected, Step, Trial, requirements, walk
from naspoison.store import CorruptRecord, ResultStore, content_key


def collect(trials: list[Trial], store: ResultStore) -> Collected:
    """Walk every trial through the store: each cell found is verified once (its digest), each missing or corrupt
    one is listed; the family of each trial turns its cells into rows of its table."""
    out = Collected(trials)
    seen: set[str] = set()
    absent: set[str] = set()

    def read(step: Step, label: str) -> dict | None:
        key = content_key(step.spec)
        out.keys.add(key)
        try:
            rec = store.get(step.stage, key)
        except CorruptRecord as e:
            out.corrupt.append(f"{step.stage} {key} {label}: {e}")
            return None
        if rec is None:
            if key not in absent:  # a victim's cell, needed by several trials, is one missing cell
                absent.add(key)
                out.missing.append(f"{step.stage} {key[:16]} {label}")
            return None
        if key not in seen:
            seen.add(key)
            out.checked += 1
        return rec.result

    for needed in requirements(trials):  # a victim's cells are part of what its attack's trials read
        walk(needed, lambda s, label=needed.label: read(s, label))
    for t in trials:
        cells = walk(t, lambda s, label=t.label: read(s, label))
        out.rows.setdefault(t.family, []).extend(FAMILIES[t.family].collect(t, cells))
    return out

