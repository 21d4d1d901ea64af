"""``naspoison verify --recompute N``: recompute stored cells and compare, so a code change that alters a
result without a stage-version bump (a stale cache that ``--check`` would still call fine) is caught.

N cells of the selected trials (cheapest first by recorded wall time, or a seeded sample) are computed
again into a scratch store, seeded with every other stored cell of their trials so that each is
computed from exactly the upstream results it was computed from. Each recomputation must be
*identical* (canonical JSON) where the platform is the same as the stored record's (CPU, same CPU
model, thread count, torch and numpy: deterministic there), or ``--exact``; otherwise its numbers
must agree within ``rtol``/``atol`` and everything else exactly. Provenance differences are listed.
"""
from __future__ import annotations

import math
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from naspoison.families import walk_store
from naspoison.run.executor import run_trials
from naspoison.store import ArtifactCache, ResultStore, canonical_json, content_key
from naspoison.store.timings import split_timings

# provenance fields that can change a result's bits (besides the code: git_revision, naspoison)
NUMERIC_FIELDS = ("device", "cpu_model", "threads", "gpu", "cuda", "cudnn", "torch", "numpy", "python",
                  "deterministic_algorithms", "cudnn_deterministic", "cudnn_benchmark", "tf32_matmul", "tf32_cudnn",
                  "float32_matmul_precision", "autocast")
SAME_PLATFORM = ("cpu_model", "threads", "torch", "numpy")


@dataclass
class Outcome:
    stage: str
    key: str
    label: str
    verdict: str                 # identical | within tolerance | DIFFERS | FAILED
    mode: str                    # exact | tolerance
    details: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # field -> [stored, recomputed]
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.verdict in ("identical", "within tolerance")


def trial_cells(trial, store: ResultStore) -> list[dict] | None:
    """Every cell spec of ``trial`` (its required trials' first), or None if one of them is not stored."""
    specs: list[dict] = []
    for t in (*trial.requires, trial):
        cells = walk_store(t, store)
        if any(result is None for _, result in cells):
            return None
        specs += [step.spec for step, _ in cells]
    return specs


def candidates(trials, store: ResultStore) -> tuple[dict[str, tuple[dict, list]], int]:
    """key -> (spec, trials using it) over the complete trials; and the number of incomplete trials skipped."""
    out: dict[str, tuple[dict, list]] = {}
    skipped = 0
    for t in trials:
        cells = trial_cells(t, store)
        if cells is None:
            skipped += 1
            continue
        for s in cells:
            out.setdefault(content_key(s), (s, []))[1].append(t)
    return out, skipped


def choose(cands: dict, store: ResultStore, n: int, sample: bool, seed: int, stages: set[str] | None,
           only_keys: set[str] | None = None) -> list[str]:
    keys = [k for k, (s, _) in cands.items()
            if (not stages or s["stage"] in stages) and (only_keys is None or k in only_keys)]
    if sample:
        return sorted(random.Random(seed).sample(sorted(keys), min(n, len(keys))))

    def wall(k: str) -> float:
        w = store.get(cands[k][0]["stage"], k).provenance.get("wall_seconds")
        return float(w) if isinstance(w, (int, float)) else math.inf

    return sorted(keys, key=lambda k: (wall(k), k))[:n]


def diff(a, b, rtol: float, atol: float, path: str = "$", out: list | None = None) -> tuple[list[str], float]:
    """Differences between two JSON values: (list of non-numeric or beyond-tolerance differences, max |a−b|)."""
    out = [] if out is None else out
    worst = 0.0
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str) or isinstance(b, str):
        if a != b:
            out.append(f"{path}: {str(a)[:60]} ≠ {str(b)[:60]}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        d = abs(a - b)
        worst = d
        if not d <= atol + rtol * abs(a):
            out.append(f"{path}: {a!r} vs {b!r} (|Δ| {d:.3g})")
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            out.append(f"{path}: keys {sorted(set(a) ^ set(b))[:5]} in only one")
        for k in a.keys() & b.keys():
            worst = max(worst, diff(a[k], b[k], rtol, atol, f"{path}.{k}", out)[1])
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            worst = max(worst, diff(x, y, rtol, atol, f"{path}[{i}]", out)[1])
    elif a != b:
        out.append(f"{path}: {type(a).__name__} vs {type(b).__name__}")
    return out, worst


def same_platform(p: dict, q: dict) -> bool:
    return (p.get("device") == q.get("device") == "cpu"
            and all(p.get(f) is not None and p.get(f) == q.get(f) for f in SAME_PLATFORM))


def recompute(trials, store: ResultStore, n: int, *, device: str = "cpu", sample: bool = False, seed: int = 0,
              stages: set[str] | None = None, exact: bool = False, rtol: float = 1e-6, atol: float = 1e-9,
              scratch: Path | None = None, keep: bool = False, emit=print,
              only_keys: set[str] | None = None) -> tuple[list[Outcome], int]:
    """Recompute ``n`` stored cells of ``trials`` and compare; (outcomes, incomplete trials skipped)."""
    cands, skipped = candidates(trials, store)
    chosen = choose(cands, store, n, sample, seed, stages, only_keys)
    root = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="naspoison-recompute-"))
    scratch_store, artifacts = ResultStore(root / "store"), ArtifactCache(root / "artifacts")
    try:
        involved = {id(t): t for k in chosen for t in cands[k][1]}
        for t in involved.values():  # every other cell of their trials, as stored: the same upstream results
            for s in trial_cells(t, store):
                k = content_key(s)
                if k not in chosen and not scratch_store.has(s["stage"], k):
                    rec = store.get(s["stage"], k)
                    scratch_store.put(rec.spec, rec.result, rec.provenance)
        events: dict[str, dict] = {}
        summary = run_trials(list(involved.values()), scratch_store, artifacts, device,
                             emit=lambda e: events.__setitem__(e["key"], e) if e.get("kind") == "done" else None)
        outcomes = []
        for k in chosen:
            spec, users = cands[k]
            old, new = store.get(spec["stage"], k), scratch_store.get(spec["stage"], k)
            label = users[0].label
            if new is None:
                errs = [f for f in summary.failed if f.startswith(label)] or summary.failed
                outcomes.append(Outcome(spec["stage"], k, label, "FAILED", "-", errs[:3]))
                emit(_line(outcomes[-1]))
                continue
            mode = "exact" if exact or same_platform(old.provenance, new.provenance) else "tolerance"
            prov = {f: [old.provenance.get(f), new.provenance.get(f)] for f in NUMERIC_FIELDS
                    if old.provenance.get(f) != new.provenance.get(f)}
            # run facts (timings, whether an artifact was recomputed) are provenance: records written before they
            # moved there still hold them in their result
            old_result, new_result = split_timings(old.result)[0], split_timings(new.result)[0]
            if canonical_json(old_result) == canonical_json(new_result):
                verdict, details = "identical", []
            else:
                details, worst = diff(old_result, new_result, rtol if mode == "tolerance" else 0.0,
                                      atol if mode == "tolerance" else 0.0)
                if mode == "exact" and not details:
                    details = ["bits differ (e.g. -0.0 vs 0.0)"]
                verdict = "DIFFERS" if details else "within tolerance"
                details = details or [f"max |Δ| {worst:.3g} (rtol {rtol:g}, atol {atol:g})"]
            o = Outcome(spec["stage"], k, label, verdict, mode, details, prov,
                        events.get(k, {}).get("seconds"))
            outcomes.append(o)
            emit(_line(o))
        return outcomes, skipped
    finally:
        artifacts.close()
        if not keep and not scratch:
            shutil.rmtree(root, ignore_errors=True)


def _line(o: Outcome) -> str:
    head = f"{'ok  ' if o.ok else 'FAIL'} {o.stage}/{o.key[:12]} {o.label}: {o.verdict} ({o.mode}"
    head += f", {o.seconds:.1f} s)" if o.seconds is not None else ")"
    lines = [head] + [f"      {d}" for d in o.details[:5]]
    changed = {f: v for f, v in o.provenance.items() if v[0] is not None}
    if changed:
        lines.append("      provenance differs: " + ", ".join(f"{f} {a!r} → {b!r}" for f, (a, b) in changed.items()))
    if len(changed) < len(o.provenance):
        lines.append(f"      stored record has no {', '.join(f for f in o.provenance if f not in changed)} "
                     "(written before they were recorded)")
    return "\n".join(lines)
