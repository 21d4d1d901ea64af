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
import sys
import time
from pathlib import Path

from naspoison import api
from naspoison.api import UsageError
from naspoison.report.assemble import assemble, print_console, write
from naspoison.store import CorruptRecord, ResultStore, StoreError, content_key
from naspoison.suite import SuiteError

DEFAULT_STORE = "cache"
DEFAULT_REPORTS = "reports"

EXIT_CODES = ("exit status: 0 ok; 1 failed cells, a failed check or verify, an unusable store or disk; "
              "2 bad input (suite, data file, arguments, devices); 130 interrupted; 141 output closed (e.g. | head)")


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _load(args) -> api.Selection:
    return api.select(args.suite, args.profile, args.only, getattr(args, "shard", None))


# ----------------------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    if args.check:
        return _check(args)
    if args.plan:
        from naspoison.run.plan import print_plan

        print_plan(_console(), api.plan(args.suite, args.profile, args.store, only=args.only, shard=args.shard),
                   args.profile)
        return 0
    con = _console()
    slurm = {"partition": args.slurm_partition, "time_min": args.slurm_time, "gpus_per_task": args.slurm_gpus,
             "cpus_per_task": args.slurm_cpus, "mem_gb": args.slurm_mem, "signal_delay_s": args.slurm_signal_delay}
    sel = _load(args)  # the suite is read (and its .npz files hashed) once: the report is of what ran
    t0 = time.perf_counter()
    with _Progress(con, args.profile) as progress:
        summary = api.bench(sel.suite, args.profile, args.store, only=args.only, shard=args.shard,
                            devices=args.devices, workers=args.workers, artifacts=args.artifacts, progress=progress.emit,
                            checkpoint_every=args.checkpoint_every, cell_threads=args.cell_threads,
                            compile=args.compile, executor=args.executor, tasks=args.tasks, slurm=slurm,
                            wait=not args.no_wait)
    if summary is None:  # submitted without waiting
        return 0
    computed = ", ".join(f"{v} {k}" for k, v in sorted(summary.computed.items()))
    computed = computed or ("nothing" if summary.failed else "nothing (all cached)")
    con.print(f"computed {computed} in {time.perf_counter() - t0:.1f} s")
    if summary.failed:
        con.print(f"[red]{len(summary.failed)} trial(s) failed[/] (kept in {args.store}/.failures, retried next run):")
        for f in summary.failed:
            con.print(f"  {f}")
    if not args.only and not args.shard:
        col, report = assemble(sel.trials, ResultStore(args.store, read_only=True))
        print_console(con, report)
        if summary.failed or col.missing or col.corrupt:
            # a partial table must not replace a complete report (by default the committed reports/)
            con.print(f"reports in {Path(args.reports) / args.profile} not written: {len(col.missing)} cells missing, "
                      f"{len(col.corrupt)} corrupt")
        else:
            for p in write(report, Path(args.reports) / args.profile):
                con.print(f"wrote {p}")
    return 1 if summary.failed else 0


class _Progress:
    """A live rich display on a terminal; one plain line per finished cell otherwise."""

    def __init__(self, console, profile: str):
        self.console, self.profile, self.total = console, profile, 0
        self.finished: set[str] = set()  # trial labels; several workers report the same trial
        self.progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def _begin(self, event: dict) -> None:
        self.total = event["trials"]
        self.console.print(f"naspoison: {self.total} trials of profile {self.profile!r} on {', '.join(event['devices'])}; "
                           f"store {event['store']}, artifacts {event['artifacts']}")
        if self.console.is_terminal:
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

    def emit(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "begin":
            return self._begin(event)
        if kind == "note":  # the submitit path's messages
            return self.console.print(event["message"], markup=False)
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


def _check(args) -> int:
    """Compute nothing, write nothing: fail on missing/corrupt cells, zero cells, or a changed report."""
    c = api.check(args.suite, args.profile, args.store, reports=args.reports, only=args.only, shard=args.shard)
    for p in c.problems:
        print(p)
    said = f"; report matches {c.committed}" if c.committed else "; report not compared (--only/--shard select part of it)"
    print(f"check: {c.checked} cells verified, {len(c.missing)} missing, {len(c.corrupt)} corrupt"
          + ("" if c.problems else said) + (" — FAILED" if c.problems else " — ok"))
    return 0 if c.ok else 1


# ----------------------------------------------------------------------------- report
def cmd_report(args) -> int:
    if args.trials:
        from naspoison.report.analysis import analyse, read_trials_csv

        try:
            trials, baseline = read_trials_csv(args.trials)
        except (OSError, ValueError) as e:
            raise UsageError(str(e)) from None
        report = analyse(trials, baseline)
    else:
        if not args.suite:
            raise UsageError("report needs a SUITE (with --profile) or --trials CSV")
        try:
            report = api.report(args.suite, args.profile, args.store, only=args.only,
                                notes=lambda m: print(m, file=sys.stderr))
        except api.NothingStored as e:
            print(f"naspoison: {e}", file=sys.stderr)
            return 1
    print_console(_console(), report)
    if args.out:
        for p in write(report, Path(args.out)):
            print(f"wrote {p}")
    return 0


# ----------------------------------------------------------------------------- store upkeep
def cmd_verify(args) -> int:
    if args.recompute is not None:
        return _verify_recompute(args)
    from naspoison.store import maintenance

    store = api.open_store(args.store)
    v = maintenance.verify(store)
    for b in v.corrupt:
        print(f"CORRUPT {b}")
    print(f"verify: {v.files} result files, {len(v.corrupt)} corrupt"
          + (f"; {v.legacy} written before record digests (their provenance is not covered)" if v.legacy else "")
          + ("; digests catch accidental edits, not a forger: `verify --recompute` checks results by recomputing"
             if v.files else f"; {store.root} holds no results"))
    return 0 if v.ok else 1


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
    from naspoison import stages
    from naspoison.run import recompute

    if args.recompute < 1:
        raise UsageError("--recompute N needs N >= 1")
    trials = _load(args).trials
    store = ResultStore(args.store, read_only=True)
    wanted = {s.strip() for s in args.stages.split(",")} if args.stages else None
    if wanted and not wanted <= set(stages.VERSIONS):
        raise UsageError(f"--stages {args.stages!r}: stages are {', '.join(sorted(stages.VERSIONS))}")
    with api.cell_settings(cell_threads=args.cell_threads):  # restored afterwards, as for bench
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
        col, report = assemble(_load(args).trials, ResultStore(p, read_only=True))
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
    store = api.open_store(args.store)
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
    from naspoison.store import maintenance

    m = maintenance.merge(ResultStore(args.store), args.sources)
    for c in m.conflicts:
        print(f"CONFLICT (kept ours) {c}")
    for b in m.corrupt:
        print(f"SKIPPED corrupt {b}")
    print(f"merge: {m.added} added, {m.same} already present, {len(m.conflicts)} conflicts, {len(m.corrupt)} corrupt skipped")
    return 0 if m.ok else 1


def cmd_gc(args) -> int:
    """Remove leftovers (temporary files, stale locks, failures of cells now done, checkpoints of stored cells).
    Results are never deleted: unreferenced ones (by no profile of SUITE) are only listed."""
    g = api.gc(args.store, artifacts=args.artifacts, dry_run=args.dry_run, suite=args.suite)
    for label, p in g.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {label}: {p}")
    for path in g.unreferenced:
        print(f"unreferenced (kept; results are never evicted): {path}")
    return 0


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
        trials = _load(args).trials
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
    for add in (_bench_parser, _report_parser, _verify_parser, _compare_parser, _upkeep_parsers, _draw_parser):
        add(sub)
    return ap


def _command(sub, *a, **kw) -> argparse.ArgumentParser:
    kw.setdefault("epilog", EXIT_CODES)  # every subcommand's --help ends with the exit codes
    return sub.add_parser(*a, **kw)


def _store_opt(p) -> None:
    p.add_argument("--store", default=DEFAULT_STORE, help="results store directory (default: cache)")


def _bench_parser(sub) -> None:
    b = _command(sub, "bench", help="run (or --plan, --check) a profile of a suite")
    b.add_argument("suite", help="the suite file (YAML), e.g. suite.yaml")
    b.add_argument("--profile", default="demo", help="which profile of the suite (default: demo)")
    b.add_argument("--only", help="filter trials: comma-separated field=glob terms (fields family, row or attack, budget, "
                                  "algorithm, seed; | for alternatives), e.g. 'attack=gaussian_noise|none,seed=0'")
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
    _store_opt(b)
    b.set_defaults(fn=cmd_bench)


def _report_parser(sub) -> None:
    r = _command(sub, "report", help="tables from the store (read-only) or from a CSV of trials")
    r.add_argument("suite", nargs="?", help="the suite file whose profile's table to show")
    r.add_argument("--profile", default="demo", help="which profile of the suite (default: demo)")
    r.add_argument("--only", help="filter trials, as for bench")
    r.add_argument("--trials", help="CSV with attack,budget,algorithm,seed,accuracy (percent)")
    r.add_argument("--out", help="also write report.{json,csv,md,tex} here")
    _store_opt(r)
    r.set_defaults(fn=cmd_report)


def _verify_parser(sub) -> None:
    v = _command(sub, "verify", help="re-hash every result file; list corrupt ones (--recompute N: recompute and compare)")
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
    _store_opt(v)
    v.set_defaults(fn=cmd_verify)


def _compare_parser(sub) -> None:
    c = _command(sub, "compare", help="two reproductions (report.json files or stores) row by row: within seed noise?")
    c.add_argument("a", help="report.json or store directory (the reference)")
    c.add_argument("b", help="report.json or store directory (the reproduction)")
    c.add_argument("--suite", default="suite.yaml", help="for store arguments: the suite (default suite.yaml)")
    c.add_argument("--profile", default="demo", help="for store arguments: which profile (default: demo)")
    c.add_argument("--only", help="for store arguments: rows of these trials only (as bench --only)")
    c.add_argument("--alpha", type=float, default=0.05, help="BH level (default 0.05)")
    c.add_argument("--json", help="also write the comparison here")
    c.set_defaults(fn=cmd_compare)


def _upkeep_parsers(sub) -> None:
    m = _command(sub, "merge", help="union other stores' results into this one")
    m.add_argument("sources", nargs="+", help="other stores (folders) whose results to add")
    _store_opt(m)
    m.set_defaults(fn=cmd_merge)
    g = _command(sub, "gc", help="remove temporary files, stale locks and stale failures")
    g.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    g.add_argument("--suite", help="also list results no profile of this suite references")
    g.add_argument("--artifacts", help="artifact cache whose orphaned checkpoints go (default: $NASPOISON_ARTIFACTS)")
    _store_opt(g)
    g.set_defaults(fn=cmd_gc)
    ls = _command(sub, "ls", help="count results per stage")
    ls.add_argument("-l", "--long", action="store_true", help="one line per result: stage, key, parameters")
    _store_opt(ls)
    ls.set_defaults(fn=cmd_ls)


def _draw_parser(sub) -> None:
    dr = _command(sub, "draw", help="cell pictures (PNG/SVG) of a genotype, an NB201 arch, or a profile's found architectures")
    dr.add_argument("suite", nargs="?", help="draw every architecture the store holds for this suite's profile")
    dr.add_argument("--profile", default="demo", help="which profile of the suite (default: demo)")
    dr.add_argument("--only", help="filter trials, as for bench")
    dr.add_argument("--genotype", help="published name (darts_v2, pdarts), genotype JSON, or a JSON file")
    dr.add_argument("--arch", help="an NB201 arch string")
    dr.add_argument("--name", help="file stem for --genotype / --arch")
    dr.add_argument("--format", default="png,svg", help="png, svg or png,svg (default: png,svg)")
    dr.add_argument("--out", default="cells", help="output folder (default: cells)")
    _store_opt(dr)
    dr.set_defaults(fn=cmd_draw)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SuiteError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return 2
    except (UsageError, StoreError) as e:  # UsageError: naspoison.api's
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
