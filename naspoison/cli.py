"""The ``naspoison`` command (SPEC §8).

  naspoison bench SUITE [--profile P] [--only EXPR] [--plan] [--check] [--shard i/N] [--devices ...]
                  [--executor processes|slurm|submitit-local --tasks N --slurm-* ... --no-wait]
  naspoison report [SUITE --profile P | --trials CSV] [--out DIR]
  naspoison verify [--recompute N] | compare A B | merge SRC... | gc [--dry-run] | ls
  naspoison draw [SUITE --profile P] [--genotype G] [--arch A] [--out DIR]
Exit status: 0 ok, 1 failed cells, failed check or an unusable store/disk, 2 bad input (suite, data file,
arguments, devices), 130 interrupted, 141 output closed (``| head``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from naspoison.store import (ArtifactCache, CorruptRecord, Record, ResultStore, StoreError, canonical_json,
                             content_key)
from naspoison.suite import SuiteError  # torch-free; Suite (the schema) is imported where a suite is read

if TYPE_CHECKING:
    from naspoison.suite import Suite

DEFAULT_STORE = "cache"
DEFAULT_REPORTS = "reports"


class UsageError(Exception):
    """Bad input from the user: exit status 2."""


EXIT_CODES = ("exit status: 0 ok; 1 failed cells, a failed check or verify, an unusable store or disk; "
              "2 bad input (suite, data file, arguments, devices); 130 interrupted; 141 output closed (e.g. | head)")


def _existing_store(path: str) -> ResultStore:
    """A store to read: it must exist (a mistyped --store is an error, not an empty table)."""
    root = Path(path)
    if not root.exists():
        raise UsageError(f"store {root} does not exist (mistyped --store?)")
    return ResultStore(root, read_only=True)


def _writable_store(path: str) -> ResultStore:
    """A store to compute into: checked writable before any cell runs, not after the first one finishes."""
    import tempfile

    store = ResultStore(path)
    try:
        with tempfile.NamedTemporaryFile(dir=store.root, prefix=".tmp-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"store {store.root} is not writable ({e.strerror or e}); use --store DIR, or "
                         "--check / --plan / report to read it") from None
    return store


def _console_report(con, report: dict) -> None:
    """The report's tables, each folded into the compact layout where the terminal is too narrow for it."""
    from naspoison.report.render import to_console

    con.print(to_console(report))


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _load(args) -> tuple[Suite, list, list[str]]:
    from naspoison.suite import Suite
    from naspoison.suite.expand import expand, select, shard

    if args.only is not None and not args.only.strip():
        raise UsageError("--only is empty: give field=pattern terms, or leave --only out to run the whole profile")
    suite = Suite(args.suite)
    exp = expand(suite, args.profile)
    try:
        trials = shard(select(exp.trials, args.only), getattr(args, "shard", None))
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not trials and args.only:
        from naspoison.suite.expand import nearest_values

        raise UsageError(f"no trial of profile {args.profile!r} matches --only {args.only!r}"
                         + nearest_values(exp.trials, args.only))
    return suite, trials, exp.skipped


def _report_for(trials, store: ResultStore):
    from naspoison.report.collect import collect, sections

    col = collect(trials, store)
    return col, sections(col)


def _write_reports(report: dict, out: Path) -> list[Path]:
    from naspoison.report.render import FORMATS

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


# ----------------------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    suite, trials, skipped = _load(args)
    if not trials:
        raise UsageError(f"no trial of profile {args.profile!r} matches --only {args.only!r}")
    if args.check:
        return _check(args, trials)
    if args.plan:
        return _plan(args, trials, skipped, ResultStore(args.store, read_only=True))
    devices = _devices(args) if args.executor == "processes" else None  # checked before anything is written
    store = _writable_store(args.store)
    if args.compile:
        import os

        from naspoison.train import COMPILE_ENV

        os.environ[COMPILE_ENV] = args.compile  # inherited by worker processes and submitit tasks
    _cell_settings(args)
    if args.executor != "processes":
        if args.tasks < 1:
            raise UsageError("--tasks must be at least 1")
        return _bench_submitit(args, suite, trials, store)
    from naspoison.run.executor import run_parallel

    artifacts = ArtifactCache(args.artifacts)
    con = _console()
    con.print(f"naspoison: {len(trials)} trials of profile {args.profile!r} on {', '.join(devices)}; "
              f"store {store.root}, artifacts {artifacts.directory}")
    t0 = time.perf_counter()
    with _Progress(len(trials), con) as progress:
        summary = run_parallel(trials, store, artifacts, devices, progress.emit)
    artifacts.close()
    return _finish(args, trials, summary, store, con, t0)


def _cell_settings(args) -> None:
    """--checkpoint-every, --cell-threads: machine settings (part of no key), passed to every worker and task
    through the environment."""
    import os

    from naspoison.run import cell, checkpoint

    for value, env, check in ((args.checkpoint_every, checkpoint.EVERY_ENV, checkpoint.interval),
                              (args.cell_threads, cell.THREADS_ENV, cell.cell_threads)):
        if value is not None:
            old, os.environ[env] = os.environ.get(env), str(value)
            try:
                check()
            except ValueError as e:
                os.environ.pop(env) if old is None else os.environ.__setitem__(env, old)
                raise UsageError(str(e)) from None


def _finish(args, trials, summary, store: ResultStore, con, t0: float) -> int:
    computed = ", ".join(f"{v} {k}" for k, v in sorted(summary.computed.items()))
    computed = computed or ("nothing" if summary.failed else "nothing (all cached)")
    con.print(f"computed {computed} in {time.perf_counter() - t0:.1f} s")
    if summary.failed:
        con.print(f"[red]{len(summary.failed)} trial(s) failed[/] (kept in {store.root}/.failures, retried next run):")
        for f in summary.failed:
            con.print(f"  {f}")
    if not args.only and not args.shard:
        col, report = _report_for(trials, ResultStore(args.store, read_only=True))
        _console_report(con, report)
        if summary.failed or col.missing or col.corrupt:
            # a partial table must not replace a complete report (by default the committed reports/)
            con.print(f"reports in {Path(args.reports) / args.profile} not written: {len(col.missing)} cells missing, "
                      f"{len(col.corrupt)} corrupt")
        else:
            for p in _write_reports(report, Path(args.reports) / args.profile):
                con.print(f"wrote {p}")
    return 1 if summary.failed else 0


def _bench_submitit(args, suite: Suite, trials, store: ResultStore) -> int:
    """--executor slurm | submitit-local: one array task per group of trials, then (unless --no-wait) wait
    and write the report; with --no-wait the same command run later resumes or collects."""
    from naspoison.run import slurm
    resources = suite.profile(args.profile).slurm
    overrides = {k: v for k, v in {"partition": args.slurm_partition, "time_min": args.slurm_time,
                                   "gpus_per_task": args.slurm_gpus, "cpus_per_task": args.slurm_cpus,
                                   "mem_gb": args.slurm_mem}.items() if v is not None}
    resources = resources.model_copy(update=overrides).model_dump()
    if args.slurm_signal_delay is not None:
        resources["signal_delay_s"] = args.slurm_signal_delay
    missing = [t for t in trials if not _trial_stored(t, store)]
    con = _console()
    if not missing:
        con.print("every cell is stored: collecting")
        from naspoison.run.executor import RunSummary

        return _finish(args, trials, RunSummary(), store, con, time.perf_counter())
    n = min(args.tasks, len(missing))
    artifacts = ArtifactCache(args.artifacts)
    cluster = "slurm" if args.executor == "slurm" else "local"
    t0 = time.perf_counter()
    jobs = slurm.submit(missing, store, artifacts, n, resources, cluster)
    artifacts.close()
    con.print(f"naspoison: {len(missing)} trials with missing cells in {len(jobs)} {cluster} task(s): "
              f"{', '.join(j.job_id for j in jobs[:4])}{' ...' if len(jobs) > 4 else ''}; logs in {store.root}/.slurm")
    if args.no_wait:
        con.print("submitted; run the same command again to resume or collect")
        return 0
    summary = slurm.wait(jobs, con.print, poll=2.0 if cluster == "local" else 30.0)
    return _finish(args, trials, summary, store, con, t0)


def _trial_stored(trial, store: ResultStore) -> bool:
    from naspoison.run.executor import is_complete

    return all(is_complete(t, store) for t in (*trial.requires, trial))


def _devices(args) -> list[str]:
    """Worker devices, checked before anything runs (a missing GPU would otherwise fail every cell)."""
    import re

    import torch

    if args.devices is not None:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        if not devices:
            raise UsageError(f"--devices {args.devices!r} names no device; e.g. cpu,cpu or cuda:0,cuda:1")
    else:
        n = torch.cuda.device_count()
        devices = [f"cuda:{i}" for i in range(n)] if n else ["cpu"] * (args.workers or _usable_cores())
    n_gpu = None
    for d in devices:
        m = re.fullmatch(r"cuda(?::(\d+))?", d)
        if not (d == "cpu" or m):
            raise UsageError(f"--devices entry {d!r} is not cpu or cuda:N")
        if m:
            n_gpu = torch.cuda.device_count() if n_gpu is None else n_gpu
            if int(m.group(1) or 0) >= n_gpu:
                raise UsageError(f"--devices entry {d!r}: this machine has {n_gpu} usable CUDA device(s)"
                                 + ("" if n_gpu else " (CPU only: use cpu)"))
    return devices


def _usable_cores() -> int:
    """The default number of CPU workers: the cores this process may run on (not every core of the host)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Progress:
    """A live rich display on a terminal; one plain line per finished cell otherwise."""

    def __init__(self, total: int, console):
        self.total, self.console = total, console
        self.finished: set[str] = set()  # trial labels; several workers report the same trial
        self.live = console.is_terminal
        self.progress = None

    def __enter__(self):
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            # ETA from finished trials (rough: trials differ in cost), then the running cell's latest line
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task("trials", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def emit(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "trial":
            self.finished.add(event["label"])
            if self.progress:
                self.progress.update(self.task, completed=len(self.finished))
            return
        if kind == "start":  # a cell begins: the live bar says so before its first progress line
            if self.progress:
                self.progress.update(self.task, description=f"trials | {event['stage']} {event['label']}: started"[:120])
            return
        if kind == "log":  # a long cell's progress: the live bar shows the latest, a log file keeps every line
            if self.progress:
                self.progress.update(self.task, description=f"trials | {event['label']}: {event['message']}"[:120])
                if event["message"].startswith("artifact "):  # an artifact evicted: keep it on screen
                    self.progress.console.print(f"{event['label']}: {event['message']}", markup=False, highlight=False)
            else:
                print(f"  {event['label']}: {event['message']}", flush=True)
            return
        if kind == "done":
            line = f"[{len(self.finished)}/{self.total} trials] {event['stage']:<6} {event['label']} ({event['seconds']:.1f} s)"
        else:
            line = f"FAILED {event.get('stage', '')} {event['label']}: {event['error']}"
        if self.progress:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)


def _plan(args, trials, skipped, store: ResultStore) -> int:
    from naspoison.families import walk

    stages_order = ("poison", "sanitize", "search", "train", "evas_search", "evas_score", "backdoor", "scenario", "defense", "metrics")
    cells: dict[str, dict[str, str]] = {}
    kind: dict[str, str] = {}  # cell key -> its cost class (see _cost_class)
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
        kind[k] = _cost_class(spec)
        cells.setdefault(spec["stage"], {})[k] = "cached" if record(spec["stage"], k) is not None else "run"
        return k

    def planned(step) -> dict | None:
        rec = record(step.stage, note(step.spec))
        return None if rec is None else rec.result

    for t in trials:
        for needed in t.requires:
            walk(needed, planned)
        last, result = walk(t, planned)[-1]
        if result is None and last.stage in t.then:  # what follows is known once this cell has run
            after = t.then[last.stage]
            unknown_after[after] = unknown_after.get(after, 0) + 1
    cells = {s: cells.get(s, {}) for s in stages_order if s in cells or s in unknown_after}
    est = _wall_estimates(store, records)
    con = _console()
    from rich.table import Table

    table = Table(title=f"plan: profile {args.profile!r}, {len(trials)} trials")
    for col in ("stage", "to run", "cached", "shared by >1 trial", "est. cost of missing"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    total_s = 0.0
    unknown = False
    for stage, d in cells.items():
        run = sum(v == "run" for v in d.values())
        extra = unknown_after.get(stage, 0)
        shared = sum(1 for k in d if users.get(k, 0) > 1)
        # a cell costs what recorded similar cells cost; cells known only after a search: the stage's median
        per_cell = [est.get(kind[k]) for k, v in d.items() if v == "run"] + [_stage_estimate(est, stage, kind)] * extra
        known = [x for x in per_cell if x is not None]
        cost = "-" if not per_cell else (f"{sum(known) / 3600:.2f} h" if known else "no timings yet")
        if len(known) < len(per_cell):
            unknown = True
            if known:
                cost += f" + {len(per_cell) - len(known)} untimed"
        total_s += sum(known)
        run_s = f"{run}" + (f" + ≤{extra} after search" if extra else "")
        table.add_row(stage, run_s, str(sum(v == "cached" for v in d.values())), str(shared), cost)
    con.print(table)
    con.print(f"estimated device time of missing cells: {total_s / 3600:.2f} h"
              + (" (plus cells of stages with no recorded timings)" if unknown else "")
              + "; from the median wall time of recorded similar cells (same stage and parameters up to seed and"
              " architecture)")
    for s in skipped:
        con.print(f"not a cell by design: {s}")
    return 0


# what a cell's cost does not depend on: which seed, which architecture, which upstream cell
_COST_FREE_PARAMS = frozenset({"seed", "poison_seed", "genotype", "arch"})


def _cost_class(spec: dict) -> str:
    """Cells expected to cost alike: same stage (and algorithm), same parameters up to seed and architecture.
    Cells of another profile (other epochs, widths, data sizes) are not similar, so never estimate each other."""
    params = {k: v for k, v in spec["params"].items() if k not in _COST_FREE_PARAMS}
    return f"{spec['stage']}:{content_key({'params': params})[:16]}"


def _stage_estimate(est: dict[str, float], stage: str, kind: dict[str, str]) -> float | None:
    """A cell not yet specified (it waits on a search): the median over this plan's similar cells of its stage."""
    known = [est[c] for c in set(kind.values()) if c.startswith(stage + ":") and c in est]
    return statistics.median(known) if known else None


def _wall_estimates(store: ResultStore, loaded: dict | None = None) -> dict[str, float]:
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
            walls.setdefault(_cost_class(rec.spec), []).append(float(w))
    return {k: statistics.median(v) for k, v in walls.items()}


def _check(args, trials) -> int:
    """Compute nothing, write nothing: fail on missing/corrupt cells, zero cells, or a changed report."""
    store = _existing_store(args.store)
    col, report = _report_for(trials, store)
    problems = []
    if not Path(args.reports).is_dir():
        problems.append(f"reports folder {args.reports} does not exist")
    if col.corrupt:
        problems += [f"corrupt: {c}" for c in col.corrupt]
    if col.missing:
        problems += [f"missing: {m}" for m in col.missing]
    if col.checked == 0:
        problems.append("zero cells checked")
    committed = Path(args.reports) / args.profile / "report.json"
    compared = not args.only and not args.shard
    if compared:
        if not committed.is_file():
            problems.append(f"no committed report at {committed}")
        else:
            try:
                old = json.loads(committed.read_text())
            except (OSError, ValueError, RecursionError) as e:
                old = None
                problems.append(f"committed report {committed} is unreadable ({type(e).__name__})")
            if old is not None and canonical_json(old) != canonical_json(report):
                problems.append(f"report differs from the committed {committed}")
    for p in problems:
        print(p)
    said = f"; report matches {committed}" if compared else "; report not compared (--only/--shard select part of it)"
    print(f"check: {col.checked} cells verified, {len(col.missing)} missing, {len(col.corrupt)} corrupt"
          + ("" if problems else said) + (" — FAILED" if problems else " — ok"))
    return 1 if problems else 0


# ----------------------------------------------------------------------------- report
def cmd_report(args) -> int:
    from naspoison.report.analysis import analyse, read_trials_csv

    if args.trials:
        try:
            trials, baseline = read_trials_csv(args.trials)
        except (OSError, ValueError) as e:
            raise UsageError(str(e)) from None
        report = analyse(trials, baseline)
    else:
        if not args.suite:
            raise UsageError("report needs a SUITE (with --profile) or --trials CSV")
        _, trials, _ = _load(args)
        col, report = _report_for(trials, _existing_store(args.store))
        if col.missing or col.corrupt:
            print(f"note: {len(col.missing)} cells missing, {len(col.corrupt)} corrupt (not used); "
                  f"run `naspoison bench` / `naspoison verify`", file=sys.stderr)
        if col.checked == 0:
            print(f"naspoison: store {args.store} holds no result of profile {args.profile!r}: no table "
                  "(mistyped --store or --profile? run `naspoison bench` first)", file=sys.stderr)
            return 1
    _console_report(_console(), report)
    if args.out:
        for p in _write_reports(report, Path(args.out)):
            print(f"wrote {p}")
    return 0


# ----------------------------------------------------------------------------- store upkeep
def cmd_verify(args) -> int:
    if args.recompute is not None:
        return _verify_recompute(args)
    store = _existing_store(args.store)
    n, bad, legacy = 0, [], 0
    for path in store.iter_files():
        n += 1
        try:
            legacy += not store.load_file(path).provenance_covered
        except CorruptRecord as e:
            bad.append(str(e))
    for b in bad:
        print(f"CORRUPT {b}")
    print(f"verify: {n} result files, {len(bad)} corrupt"
          + (f"; {legacy} written before record digests (their provenance is not covered)" if legacy else "")
          + ("; digests catch accidental edits, not a forger: `verify --recompute` checks results by recomputing"
             if n else f"; {store.root} holds no results"))
    return 1 if bad or n == 0 else 0


def _key_list(raw: str | None) -> set[str] | None:
    """--keys: comma- or whitespace-separated cell keys (e.g. those a change touched); None: no restriction."""
    if raw is None:
        return None
    keys = set(raw.replace(",", " ").split())
    bad = sorted(k for k in keys if len(k) != 64 or any(c not in "0123456789abcdef" for c in k))
    if bad:
        raise UsageError(f"--keys: {bad[0]!r} is not a cell key (64 hex digits)")
    return keys


def _verify_recompute(args) -> int:
    """verify --recompute N: the logic is in naspoison.run.recompute."""
    import os

    from naspoison import stages
    from naspoison.run import cell, recompute

    if args.recompute < 1:
        raise UsageError("--recompute N needs N >= 1")
    if args.cell_threads is not None:
        if args.cell_threads < 1:
            raise UsageError("--cell-threads must be at least 1")
        os.environ[cell.THREADS_ENV] = str(args.cell_threads)
    _, trials, _ = _load(args)
    store = ResultStore(args.store, read_only=True)
    wanted = {s.strip() for s in args.stages.split(",")} if args.stages else None
    if wanted and not wanted <= set(stages.VERSIONS):
        raise UsageError(f"--stages {args.stages!r}: stages are {', '.join(sorted(stages.VERSIONS))}")
    outcomes, skipped = recompute.recompute(trials, store, args.recompute, device=args.device, sample=args.sample,
                                            seed=args.seed, stages=wanted, exact=args.exact, rtol=args.rtol,
                                            atol=args.atol, scratch=args.scratch, keep=bool(args.scratch),
                                            only_keys=_key_list(args.keys))
    bad = [o for o in outcomes if not o.ok]
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("identical", "within tolerance", "DIFFERS", "FAILED")}
    print(f"verify --recompute: {len(outcomes)} cells recomputed: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + (f"; {skipped} incomplete trials not considered" if skipped else "")
          + (" — FAILED (a result changed without a stage-version bump"
             + ("?)" if all(o.mode == "exact" for o in bad) else ", or another platform: see the provenance; "
                "`naspoison compare` says whether table rows differ beyond seed noise)") if bad
             else " — ok" if outcomes else " — nothing to recompute"))
    return 1 if bad or not outcomes else 0


def cmd_compare(args) -> int:
    """compare A B: two report.json files or two stores (with SUITE --profile); logic in naspoison.report.compare."""
    from naspoison.report import compare

    def report_of(x: str) -> dict:
        p = Path(x)
        if p.is_file():
            try:
                return json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise UsageError(f"{x}: not a report.json ({e})") from None
        if not p.is_dir():
            raise UsageError(f"{x}: neither a report.json nor a store directory")
        _, trials, _ = _load(args)
        col, report = _report_for(trials, ResultStore(p, read_only=True))
        if col.missing or col.corrupt:
            print(f"note: {x}: {len(col.missing)} cells missing, {len(col.corrupt)} corrupt (rows use what is stored)")
        return report

    if not 0 < args.alpha < 1:
        raise UsageError("--alpha must lie in (0, 1)")
    result = compare.compare(report_of(args.a), report_of(args.b), args.alpha)
    if not result["rows"]:
        raise UsageError("no row in common between A and B")
    print(compare.to_text(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 1 if result["beyond_noise"] or result["mark_flips"] else 0


def cmd_ls(args) -> int:
    store = _existing_store(args.store)
    counts: dict[str, int] = {}
    for path in store.iter_files():
        counts[path.parent.name] = counts.get(path.parent.name, 0) + 1
        if args.long:
            try:
                rec = store.load_file(path)
                print(f"{rec.stage:<7} {rec.key[:16]} {json.dumps(rec.spec['params'], sort_keys=True)[:100]}")
            except CorruptRecord as e:
                print(f"CORRUPT {e}")
    for stage, c in sorted(counts.items()):
        print(f"{stage}: {c}")
    failures = store.failures()
    damaged = sum(f["spec"] is None for f in failures)
    print(f"failures: {len(failures)}" + (f" ({damaged} unreadable; `naspoison gc` removes them)" if damaged else ""))
    return 0


def cmd_merge(args) -> int:
    """Union of result files from other stores; a key present in both must hold the same result."""
    from naspoison.store.timings import same_result

    dest = ResultStore(args.store)
    added = same = 0
    conflicts, bad = [], []
    for src in args.sources:
        s = ResultStore(src, read_only=True)
        if not s.root.is_dir():
            raise UsageError(f"merge source {src} is not a directory")
        if s.root.resolve() == dest.root.resolve():
            raise UsageError(f"merge source {src} is the store itself")
        for path in s.iter_files():
            try:
                rec = s.load_file(path)
            except CorruptRecord as e:
                bad.append(str(e))
                continue
            try:
                mine = dest.get(rec.stage, rec.key)
            except CorruptRecord as e:  # never overwritten: the user decides (verify, then remove it)
                conflicts.append(f"{rec.stage}/{rec.key}: ours is corrupt, not replaced ({e}); run `naspoison verify`")
                continue
            if mine is None:
                dest.put(rec.spec, rec.result, rec.provenance)
                added += 1
            elif same_result(mine.result, rec.result):  # timings are provenance: not a conflict
                same += 1
            else:
                conflicts.append(f"{rec.stage}/{rec.key}: {path} differs from {dest.path(rec.stage, rec.key)}")
    for c in conflicts:
        print(f"CONFLICT (kept ours) {c}")
    for b in bad:
        print(f"SKIPPED corrupt {b}")
    print(f"merge: {added} added, {same} already present, {len(conflicts)} conflicts, {len(bad)} corrupt skipped")
    return 1 if conflicts or bad else 0


def cmd_gc(args) -> int:
    """Remove leftovers (temporary files, stale locks, failures of cells now done). Results are never
    deleted: unreferenced ones (by no profile of SUITE) are only listed."""
    store = _existing_store(args.store) if args.dry_run else ResultStore(args.store)
    root = store.root
    leftovers = list(root.glob("*/.tmp-*"))
    locks = [p for p in (root / ".locks").glob("*.lock") if ResultStore._lock_is_stale(p)] if (root / ".locks").exists() else []
    failures = store.failures()
    done_failures = [root / ".failures" / f"{f['key']}.json" for f in failures
                     if f["spec"] is not None and store.has(f["spec"].get("stage", ""), f["key"])]
    damaged = [Path(f["path"]) for f in failures if f["spec"] is None]  # e.g. a full disk mid-write
    leftovers += list((root / ".failures").glob(".tmp-*")) if (root / ".failures").is_dir() else []
    for label, paths in (("temporary file", leftovers), ("stale lock", locks), ("failure of a finished cell", done_failures),
                         ("unreadable failure file", damaged)):
        for p in paths:
            print(f"{'would remove' if args.dry_run else 'removed'} {label}: {p}")
            if not args.dry_run:
                p.unlink(missing_ok=True)
    _gc_checkpoints(args, store)
    if args.suite:
        from naspoison.report.collect import collect
        from naspoison.suite import Suite
        from naspoison.suite.expand import expand

        suite = Suite(args.suite)
        referenced: set[str] = set()
        for prof in suite.model.profiles:
            trials = expand(suite, prof).trials
            referenced |= collect(trials, ResultStore(args.store, read_only=True)).keys
        for path in store.iter_files():
            if path.stem not in referenced:
                print(f"unreferenced (kept; results are never evicted): {path}")
    return 0


def _gc_checkpoints(args, store: ResultStore) -> None:
    """In-cell checkpoints of cells already stored (killed between storing and removing them)."""
    from naspoison.run import checkpoint_keys as checkpoint

    artifacts = ArtifactCache(args.artifacts)
    try:
        for k in checkpoint.orphans(artifacts, store):
            print(f"{'would remove' if args.dry_run else 'removed'} checkpoint of a stored cell: {k}")
            if not args.dry_run:
                checkpoint.delete(artifacts, k)
    finally:
        artifacts.close()


# ----------------------------------------------------------------------------- draw
def cmd_draw(args) -> int:
    """Cell pictures: a given genotype or NB201 arch, and/or every architecture the store holds for a
    suite profile's searches (read-only: nothing is recomputed)."""
    import re

    from naspoison.report import cells

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if not formats or any(f not in ("png", "svg") for f in formats):
        raise UsageError(f"--format {args.format!r}: png, svg or png,svg")
    if not (args.genotype or args.arch or args.suite):
        raise UsageError("draw what? give --genotype, --arch or a SUITE (with --profile)")
    out, written = Path(args.out), []
    try:
        if args.genotype:
            written += cells.draw_genotype(_genotype_arg(args.genotype), out, args.name or "genotype", formats)
        if args.arch:
            written += cells.draw_nb201(args.arch, out, args.name or "nb201", formats)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.suite:
        _, trials, _ = _load(args)
        store = ResultStore(args.store, read_only=True)
        seen, missing = set(), 0
        for t in trials:
            search = next((step.spec for step in t.steps() if step.stage in ("search", "evas_search")), None)
            if search is None or content_key(search) in seen:
                continue
            seen.add(content_key(search))
            rec = store.get(search["stage"], content_key(search))
            if rec is None:
                missing += 1
                continue
            stem = re.sub(r"[^A-Za-z0-9@.=_-]+", "_", t.label)
            if "genotype" in rec.result:
                from naspoison.spaces.darts import Genotype

                written += cells.draw_genotype(Genotype.from_dict(rec.result["genotype"]), out, stem, formats)
            elif "arch" in rec.result:
                written += cells.draw_nb201(rec.result["arch"], out, stem, formats)
        if missing:
            print(f"{missing} search(es) of profile {args.profile!r} not in {store.root} yet: not drawn")
    for p in written:
        print(f"wrote {p}")
    return 0


def _genotype_arg(value: str):
    """A published name (darts_v2, pdarts), a JSON genotype, or a file holding one."""
    from naspoison.spaces.darts import PUBLISHED, Genotype

    if value in PUBLISHED:
        return PUBLISHED[value]
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        return Genotype.from_json(text)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UsageError(f"--genotype {value[:60]!r}: not a published name ({', '.join(PUBLISHED)}), "
                         f"a genotype JSON or a file holding one ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- entry point
def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not at least 1")
    return n


def _version() -> str:
    import naspoison

    return f"naspoison {naspoison.__version__}"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="naspoison", description="Audit neural architecture search under data poisoning.",
                                 epilog=EXIT_CODES)
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _sub_parser = sub.add_parser

    def add_parser(*a, **kw):  # every subcommand's --help ends with the exit codes
        kw.setdefault("epilog", EXIT_CODES)
        return _sub_parser(*a, **kw)

    sub.add_parser = add_parser

    def store_opt(p):
        p.add_argument("--store", default=DEFAULT_STORE, help="results store directory (default: cache)")

    b = sub.add_parser("bench", help="run (or --plan, --check) a profile of a suite")
    b.add_argument("suite", help="the suite file (YAML), e.g. suite.yaml")
    b.add_argument("--profile", default="demo", help="which profile of the suite (default: demo)")
    b.add_argument("--only", help="filter trials, e.g. 'attack=gaussian_noise|none,seed=0'")
    b.add_argument("--plan", action="store_true", help="show cells to run, cached, reused and estimated cost")
    b.add_argument("--check", action="store_true", help="compute nothing; fail on missing/corrupt cells or a changed report")
    b.add_argument("--shard", help="i/N: run only every N-th trial from the i-th")
    b.add_argument("--devices", help="comma-separated, one worker each: cpu,cpu or cuda:0,cuda:1 (default: every GPU, else cpu)")
    b.add_argument("--workers", type=_positive_int, default=None,
                   help="CPU workers when --devices is not given and there is no GPU (default: the number of "
                        "usable cores; each cell runs at --cell-threads threads whatever this is)")
    b.add_argument("--executor", choices=("processes", "slurm", "submitit-local"), default="processes",
                   help="processes: workers on this machine (default); slurm: a submitit job array; "
                        "submitit-local: the same array as local processes (testing)")
    b.add_argument("--compile", metavar="BACKEND", help="torch.compile the training step (inductor on a GPU; "
                   "eager to test the plumbing); a speed option, not part of the cells' keys")
    b.add_argument("--tasks", type=_positive_int, default=8, help="array tasks for --executor slurm (groups of trials; default: 8)")
    b.add_argument("--slurm-partition", help="SLURM partition (default: the profile's slurm.partition)")
    b.add_argument("--slurm-time", type=int, help="minutes per task (default: the profile's slurm.time_min)")
    b.add_argument("--slurm-gpus", type=int, help="GPUs per task")
    b.add_argument("--slurm-cpus", type=int, help="CPUs per task")
    b.add_argument("--slurm-mem", type=int, help="GB per task")
    b.add_argument("--slurm-signal-delay", type=int, metavar="SECONDS",
                   help="the time-limit signal (checkpoint and requeue) comes this long before the limit")
    b.add_argument("--checkpoint-every", metavar="SECONDS",
                   help="long loops save their state this often (default 600; 0: every epoch; off); not part of any key")
    b.add_argument("--cell-threads", type=int, metavar="N",
                   help="intra-op threads of every cell whatever --workers (default 1); results depend on it")
    b.add_argument("--no-wait", action="store_true", help="submit and return; rerun the command to collect")
    b.add_argument("--artifacts", help="artifact cache directory (default: $NASPOISON_ARTIFACTS or ~/.cache/naspoison/artifacts)")
    b.add_argument("--reports", default=DEFAULT_REPORTS, help="where reports are written / compared (default: reports)")
    store_opt(b)
    b.set_defaults(fn=cmd_bench)

    r = sub.add_parser("report", help="tables from the store (read-only) or from a CSV of trials")
    r.add_argument("suite", nargs="?", help="the suite file whose profile's table to show")
    r.add_argument("--profile", default="demo", help="which profile of the suite (default: demo)")
    r.add_argument("--only", help="filter trials, as for bench")
    r.add_argument("--trials", help="CSV with attack,budget,algorithm,seed,accuracy (percent)")
    r.add_argument("--out", help="also write report.{json,csv,md,tex} here")
    store_opt(r)
    r.set_defaults(fn=cmd_report)

    v = sub.add_parser("verify", help="re-hash every result file; list corrupt ones (--recompute N: recompute and compare)")
    v.add_argument("--recompute", type=int, metavar="N", help="recompute N stored cells (cheapest first) into a "
                   "scratch store and compare: identical on the same platform, else within --rtol/--atol")
    v.add_argument("--suite", default="suite.yaml", help="with --recompute: the suite (default suite.yaml)")
    v.add_argument("--profile", default="demo", help="with --recompute: which profile of the suite (default: demo)")
    v.add_argument("--only", help="with --recompute: cells of these trials only (as bench --only)")
    v.add_argument("--stages", help="with --recompute: only cells of these stages, e.g. train,poison")
    v.add_argument("--keys", help="with --recompute: only these cell keys (comma- or space-separated), e.g. the "
                                  "result files a change touched; none of them stored: nothing to recompute")
    v.add_argument("--sample", action="store_true", help="a seeded random sample instead of the cheapest cells")
    v.add_argument("--seed", type=int, default=0, help="seed of --sample")
    v.add_argument("--exact", action="store_true", help="require identical results even across platforms")
    v.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance across platforms (default 1e-6)")
    v.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance across platforms (default 1e-9)")
    v.add_argument("--scratch", help="keep the recomputed cells in this folder (a store and artifacts)")
    v.add_argument("--device", default="cpu", help="with --recompute: where to recompute (default: cpu)")
    v.add_argument("--cell-threads", type=int, metavar="N", help="intra-op threads of the recomputation")
    store_opt(v)
    v.set_defaults(fn=cmd_verify)
    c = sub.add_parser("compare", help="two reproductions (report.json files or stores) row by row: within seed noise?")
    c.add_argument("a", help="report.json or store directory (the reference)")
    c.add_argument("b", help="report.json or store directory (the reproduction)")
    c.add_argument("--suite", default="suite.yaml", help="for store arguments: the suite (default suite.yaml)")
    c.add_argument("--profile", default="demo", help="for store arguments: which profile (default: demo)")
    c.add_argument("--only", help="for store arguments: rows of these trials only (as bench --only)")
    c.add_argument("--alpha", type=float, default=0.05, help="BH level (default 0.05)")
    c.add_argument("--json", help="also write the comparison here")
    c.set_defaults(fn=cmd_compare)
    m = sub.add_parser("merge", help="union other stores' results into this one")
    m.add_argument("sources", nargs="+", help="other stores (folders) whose results to add")
    store_opt(m)
    m.set_defaults(fn=cmd_merge)
    g = sub.add_parser("gc", help="remove temporary files, stale locks and stale failures")
    g.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    g.add_argument("--suite", help="also list results no profile of this suite references")
    g.add_argument("--artifacts", help="artifact cache whose orphaned checkpoints go (default: $NASPOISON_ARTIFACTS)")
    store_opt(g)
    g.set_defaults(fn=cmd_gc)
    ls = sub.add_parser("ls", help="count results per stage")
    ls.add_argument("-l", "--long", action="store_true", help="one line per result: stage, key, parameters")
    store_opt(ls)
    ls.set_defaults(fn=cmd_ls)

    dr = sub.add_parser("draw", help="cell pictures (PNG/SVG) of a genotype, an NB201 arch, or a profile's found architectures")
    dr.add_argument("suite", nargs="?", help="draw every architecture the store holds for this suite's profile")
    dr.add_argument("--profile", default="demo", help="which profile of the suite (default: demo)")
    dr.add_argument("--only", help="filter trials, as for bench")
    dr.add_argument("--genotype", help="published name (darts_v2, pdarts), genotype JSON, or a JSON file")
    dr.add_argument("--arch", help="an NB201 arch string")
    dr.add_argument("--name", help="file stem for --genotype / --arch")
    dr.add_argument("--format", default="png,svg", help="png, svg or png,svg (default: png,svg)")
    dr.add_argument("--out", default="cells", help="output folder (default: cells)")
    store_opt(dr)
    dr.set_defaults(fn=cmd_draw)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SuiteError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return 2
    except (UsageError, StoreError) as e:
        print(f"naspoison: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are kept, rerun to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (| head): no traceback, and no further writes to the closed pipe
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # a full disk, a read-only folder, an artifact cache that cannot be opened
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"naspoison: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
