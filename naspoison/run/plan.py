"""What a run would do, computing nothing: per stage, the cells to run, cached and shared between trials, and an
estimated cost of the missing ones from the recorded wall times of similar cells (``bench --plan``).
Read-only and torch-free."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from naspoison.families import requirements, walk
from naspoison.stages import STAGES
from naspoison.store import CorruptRecord, Record, ResultStore, content_key


# what a cell's cost does not depend on: which seed, which architecture, which upstream cell
_COST_FREE_PARAMS = frozenset({"seed", "poison_seed", "genotype", "arch"})


@dataclass
class StageRow:
    stage: str
    to_run: int        # missing cells known now
    after_search: int  # at most this many more, known once a search they wait on has run
    cached: int
    shared: int        # cells more than one trial uses
    timed: int         # missing cells with a recorded similar cell (the rest have no estimate)
    cost_s: float      # estimated device seconds of the timed missing cells

    @property
    def missing(self) -> int:
        return self.to_run + self.after_search


@dataclass
class Plan:
    trials: int
    rows: list[StageRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not cells by design (the expansion says why)

    @property
    def total_s(self) -> float:
        return sum(r.cost_s for r in self.rows)

    @property
    def untimed(self) -> bool:
        """Some missing cell has no estimate (its stage has no recorded similar cell)."""
        return any(r.timed < r.missing for r in self.rows)


def cost_class(spec: dict) -> str:
    """Cells expected to cost alike: same stage (and algorithm), same parameters up to seed and architecture.
    Cells of another profile (other epochs, widths, data sizes) are not similar, so never estimate each other."""
    params = {k: v for k, v in spec["params"].items() if k not in _COST_FREE_PARAMS}
    return f"{spec['stage']}:{content_key({'params': params})[:16]}"


def wall_estimates(store: ResultStore, loaded: dict | None = None) -> dict[str, float]:
    """Median recorded wall time per cost class; ``loaded``: records already read, by (stage, key)."""
    walls: dict[str, list[float]] = {}
    for path in store.iter_files():
        if loaded is not None and (path.parent.name, path.stem) in loaded:
            rec = loaded[path.parent.name, path.stem]
        else:
            try:
                rec = store.load_file(path)
            except CorruptRecord:
                rec = None
        if rec is None:
            continue
        w = rec.provenance.get("wall_seconds")
        if isinstance(w, (int, float)):
            walls.setdefault(cost_class(rec.spec), []).append(float(w))
    return {k: statistics.median(v) for k, v in walls.items()}


def _stage_estimate(est: dict[str, float], stage: str, kind: dict[str, str]) -> float | None:
    """A cell not yet specified (it waits on a search): the median over this plan's similar cells of its stage."""
    known = [est[c] for c in set(kind.values()) if c.startswith(stage + ":") and c in est]
    return statistics.median(known) if known else None


def plan(trials, store: ResultStore, skipped: list[str] = ()) -> Plan:
    """The plan of running ``trials`` into ``store``; ``skipped``: the expansion's notes, passed through."""

    cells: dict[str, dict[str, str]] = {}  # stage -> key -> "run" | "cached"
    kind: dict[str, str] = {}  # cell key -> its cost class
    users: dict[str, int] = {}
    unknown_after: dict[str, int] = {}  # stage -> cells not known until a search has run
    records: dict[tuple[str, str], Record | None] = {}  # each file read and verified once; corrupt: None

    def record(stage: str, k: str) -> Record | None:
        if (stage, k) not in records:
            try:
                records[stage, k] = store.get(stage, k)
            except CorruptRecord:
                records[stage, k] = None
        return records[stage, k]

    def note(spec: dict) -> str:
        k = content_key(spec)
        users[k] = users.get(k, 0) + 1
        kind[k] = cost_class(spec)
        cells.setdefault(spec["stage"], {})[k] = "cached" if record(spec["stage"], k) is not None else "run"
        return k

    def planned(step) -> dict | None:
        rec = record(step.stage, note(step.spec))
        return None if rec is None else rec.result

    for needed in requirements(trials):
        walk(needed, planned)
    for t in trials:
        last, result = walk(t, planned)[-1]
        if result is None and last.stage in t.then:  # what follows is known once this cell has run
            after = t.then[last.stage]
            unknown_after[after] = unknown_after.get(after, 0) + 1
    est = wall_estimates(store, records)
    out = Plan(len(trials), skipped=list(skipped))
    for stage in (s for s in STAGES if s in cells or s in unknown_after):  # the pipeline order
        d = cells.get(stage, {})
        extra = unknown_after.get(stage, 0)
        # a cell costs what recorded similar cells cost; cells known only after a search: the stage's median
        per_cell = [est.get(kind[k]) for k, v in d.items() if v == "run"] + [_stage_estimate(est, stage, kind)] * extra
        known = [x for x in per_cell if x is not None]
        out.rows.append(StageRow(stage, sum(v == "run" for v in d.values()), extra,
                                 sum(v == "cached" for v in d.values()), sum(1 for k in d if users.get(k, 0) > 1),
                                 len(known), sum(known)))
    return out


def print_plan(con, p: Plan, profile: str) -> None:
    """The plan as a rich table and its totals on ``con``."""
    from rich.table import Table

    table = Table(title=f"plan: profile {profile!r}, {p.trials} trials")
    for col in ("stage", "to run", "cached", "shared by >1 trial", "est. cost of missing"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in p.rows:
        cost = "-" if not r.missing else (f"{r.cost_s / 3600:.2f} h" if r.timed else "no timings yet")
        if r.timed and r.timed < r.missing:
            cost += f" + {r.missing - r.timed} untimed"
        run_s = f"{r.to_run}" + (f" + ≤{r.after_search} after search" if r.after_search else "")
        table.add_row(r.stage, run_s, str(r.cached), str(r.shared), cost)
    con.print(table)
    con.print(f"estimated device time of missing cells: {p.total_s / 3600:.2f} h"
              + (" (plus cells of stages with no recorded timings)" if p.untimed else "")
              + "; from the median wall time of recorded similar cells (same stage and parameters up to seed and"
              " architecture)")
    for s in p.skipped:
        con.print(f"not a cell by design: {s}")
