"""The Python API: run, plan, check and report a suite profile, the way the ``naspoison`` command does (the
command is a thin layer over these functions); and the pieces a researcher calls directly (a dataset, the
training-free metrics of an architecture, training one).

    import naspoison
    summary = naspoison.bench("suite.yaml", "demo", store="cache", only="attack=none,seed=0")
    report = naspoison.report("suite.yaml", "demo", store="cache")   # the dict of report.json

Importing this module imports no torch; running cells does.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from naspoison.report.assemble import assemble, write
from naspoison.store import ArtifactCache, ResultStore, canonical_json

if TYPE_CHECKING:
    from naspoison.run.executor import RunSummary
    from naspoison.run.plan import Plan
    from naspoison.store.maintenance import GcResult
    from naspoison.suite import Suite

Progress = Callable[[dict], None]  # run events: {"kind": "begin"|"start"|"done"|"failed"|"trial"|"log"|"note", ...}


class UsageError(ValueError):
    """Bad input from the caller (a filter that matches nothing, an unknown device): the command's exit status 2."""


class NothingStored(UsageError):
    """The store holds no result of the profile: no table (a mistyped store or profile?)."""


# ----------------------------------------------------------------------------- suites and stores
@dataclass
class Selection:
    """The trials of a suite profile that a call works on."""

    suite: Suite
    profile: str
    trials: list
    skipped: list[str]  # not cells by design (the expansion says why)


def select(suite: str | Path | Suite, profile: str = "demo", only: str | None = None,
           shard: str | None = None) -> Selection:
    """``suite`` (a path or a read :class:`Suite`) expanded for ``profile``, filtered by ``only``
    (``field=pattern`` terms, e.g. ``"attack=none|gaussian_noise,seed=0"``) and ``shard`` (``"i/N"``)."""
    from naspoison.suite import Suite
    from naspoison.suite.expand import expand, nearest_values
    from naspoison.suite.expand import select as filtered
    from naspoison.suite.expand import shard as sharded

    if only is not None and not only.strip():
        raise UsageError("--only is empty: give field=pattern terms, or leave --only out to run the whole profile")
    suite = suite if isinstance(suite, Suite) else Suite(suite)
    exp = expand(suite, profile)
    try:
        trials = sharded(filtered(exp.trials, only), shard)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not trials and only:
        raise UsageError(f"no trial of profile {profile!r} matches --only {only!r}" + nearest_values(exp.trials, only))
    return Selection(suite, profile, trials, exp.skipped)


def open_store(path: str | Path) -> ResultStore:
    """A store to read: it must exist (a mistyped store is an error, not an empty table)."""
    if isinstance(path, ResultStore):
        return path
    if not Path(path).exists():
        raise UsageError(f"store {path} does not exist (mistyped --store?)")
    return ResultStore(path, read_only=True)


def writable_store(path: str | Path) -> ResultStore:
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


def resolve_devices(devices: str | list[str] | None = None, workers: int | None = None) -> list[str]:
    """Worker devices, checked before anything runs (a missing GPU would otherwise fail every cell): ``devices``
    as given ("cpu,cpu", ["cuda:0", "cuda:1"]), else every GPU, else ``workers`` (default: usable cores) CPUs."""
    import re

    import torch

    if devices is not None:
        given = devices if isinstance(devices, str) else ",".join(devices)
        devices = [d.strip() for d in given.split(",") if d.strip()]
        if not devices:
            raise UsageError(f"--devices {given!r} names no device; e.g. cpu,cpu or cuda:0,cuda:1")
    else:
        n = torch.cuda.device_count()
        devices = [f"cuda:{i}" for i in range(n)] if n else ["cpu"] * (workers or usable_cores())
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


def usable_cores() -> int:
    """The default number of CPU workers: the cores this process may run on (not every core of the host)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- run
@contextlib.contextmanager
def cell_settings(checkpoint_every: str | float | None = None, cell_threads: int | None = None) -> Iterator[None]:
    """Machine settings of every cell (part of no key) for the duration of a run: how often long loops checkpoint,
    how many intra-op threads a cell uses. Worker processes and submitit tasks inherit them."""
    from naspoison.run import cell, checkpoint

    saved: dict[str, str | None] = {}
    try:
        for value, env, check in ((checkpoint_every, checkpoint.EVERY_ENV, checkpoint.interval),
                                  (cell_threads, cell.THREADS_ENV, cell.cell_threads)):
            if value is not None:
                saved[env], os.environ[env] = os.environ.get(env), str(value)
                try:
                    check()
                except ValueError as e:
                    raise UsageError(str(e)) from None
        yield
    finally:
        for env, old in saved.items():
            os.environ.pop(env) if old is None else os.environ.__setitem__(env, old)


def bench(suite: str | Path | Suite, profile: str = "demo", store: str | Path = "cache", *, only: str | None = None,
          shard: str | None = None, devices: str | list[str] | None = None, workers: int | None = None,
          artifacts: str | Path | None = None, progress: Progress | None = None,
          checkpoint_every: str | float | None = None, cell_threads: int | None = None,
          compile: str | bool | None = None, executor: str = "processes", tasks: int = 8,
          slurm: dict[str, Any] | None = None, wait: bool = True) -> RunSummary | None:
    """Compute the missing cells of a suite profile (those of ``only``/``shard``) into ``store``; stored cells
    are reused. ``progress`` receives every run event. ``compile``: a ``torch.compile`` backend for training
    steps (True: inductor), a speed option in no key. ``executor``: ``"processes"`` (one worker per device),
    ``"slurm"`` or ``"submitit-local"`` (a job array of ``tasks`` tasks; ``slurm``: resources overriding the
    profile's). Returns what was computed and what failed (failed cells are retried next run); None when the
    array was submitted without waiting (``wait=False``). Several devices mean spawned worker processes: call it
    from under ``if __name__ == "__main__":`` in a script, or pass ``devices="cpu"`` (this process)."""
    from naspoison.run import machine

    sel = select(suite, profile, only, shard)
    if not sel.trials:
        raise UsageError(f"no trial of profile {profile!r} matches --only {only!r}")
    if executor not in ("processes", "slurm", "submitit-local"):
        raise UsageError(f"executor {executor!r}: processes, slurm or submitit-local")
    devs = resolve_devices(devices, workers) if executor == "processes" else None  # before anything is written
    st = writable_store(store)
    emit = progress or (lambda e: None)
    backend = "inductor" if compile is True else (compile or None)
    with cell_settings(checkpoint_every, cell_threads), machine.using(compile=backend):
        if executor != "processes":
            if tasks < 1:
                raise UsageError("--tasks must be at least 1")
            return _bench_submitit(sel, st, artifacts, emit, executor, tasks, slurm or {}, wait)
        from naspoison.run.executor import run_parallel

        cache = ArtifactCache(artifacts)
        try:
            emit({"kind": "begin", "trials": len(sel.trials), "devices": devs, "store": str(st.root),
                  "artifacts": str(cache.directory)})
            return run_parallel(sel.trials, st, cache, devs, emit)
        finally:
            cache.close()


def _bench_submitit(sel: Selection, store: ResultStore, artifacts, emit: Progress, executor: str, tasks: int,
                    overrides: dict, wait: bool) -> RunSummary | None:
    """One array task per group of trials, then (``wait``) wait for them; without waiting, the same call made
    later resumes or collects."""
    from naspoison.run import slurm
    from naspoison.run.executor import RunSummary

    def note(message: str) -> None:
        emit({"kind": "note", "message": message})

    resources = sel.suite.profile(sel.profile).slurm
    signal_delay = overrides.get("signal_delay_s")
    try:  # validated like the suite's own block: a mistyped override is an error, not a silent sbatch option
        resources = type(resources).model_validate({**resources.model_dump(), **{
            k: v for k, v in overrides.items() if v is not None and k != "signal_delay_s"}}).model_dump()
    except ValidationError as e:
        raise UsageError(f"slurm settings: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
    if signal_delay is not None:
        resources["signal_delay_s"] = signal_delay
    missing = [t for t in sel.trials if not slurm.stored(t, store)]
    if not missing:
        note("every cell is stored: collecting")
        return RunSummary()
    cache = ArtifactCache(artifacts)
    cluster = "slurm" if executor == "slurm" else "local"
    try:
        jobs = slurm.submit(missing, store, cache, min(tasks, len(missing)), resources, cluster)
    finally:
        cache.close()
    note(f"naspoison: {len(missing)} trials with missing cells in {len(jobs)} {cluster} task(s): "
         f"{', '.join(j.job_id for j in jobs[:4])}{' ...' if len(jobs) > 4 else ''}; logs in {store.root}/.slurm")
    if not wait:
        note("submitted; run the same command again to resume or collect")
        return None
    return slurm.wait(jobs, note, poll=2.0 if cluster == "local" else 30.0)


# ----------------------------------------------------------------------------- read
def plan(suite: str | Path | Suite, profile: str = "demo", store: str | Path = "cache", *, only: str | None = None,
         shard: str | None = None) -> Plan:
    """What ``bench`` would compute and an estimated cost, computing nothing."""
    from naspoison.run.plan import plan as make_plan

    sel = select(suite, profile, only, shard)
    if not sel.trials:
        raise UsageError(f"no trial of profile {profile!r} matches --only {only!r}")
    return make_plan(sel.trials, ResultStore(store, read_only=True), sel.skipped)


def report(suite: str | Path | Suite, profile: str = "demo", store: str | Path = "cache", *, only: str | None = None,
           out: str | Path | None = None, notes: Callable[[str], None] | None = None) -> dict:
    """The report of a suite profile from what ``store`` holds (read-only; the dict ``report.json`` holds), also
    written as ``report.{json,csv,md,tex}`` and plots to ``out`` when given. ``notes`` hears about missing and
    corrupt cells (left out of the tables); a store holding no cell of the profile raises :class:`NothingStored`."""
    sel = select(suite, profile, only)
    col, rep = assemble(sel.trials, open_store(store))
    if (col.missing or col.corrupt) and notes:
        notes(f"note: {len(col.missing)} cells missing, {len(col.corrupt)} corrupt (not used); "
              "run `naspoison bench` / `naspoison verify`")
    if col.checked == 0:
        raise NothingStored(f"store {store} holds no result of profile {profile!r}: no table "
                            "(mistyped --store or --profile? run `naspoison bench` first)")
    if out is not None:
        write(rep, Path(out))
    return rep


@dataclass
class Check:
    checked: int
    missing: list[str]
    corrupt: list[str]
    problems: list[str] = field(default_factory=list)
    committed: Path | None = None  # the report.json compared against; None: not compared (only part selected)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(suite: str | Path | Suite, profile: str = "demo", store: str | Path = "cache", *,
          reports: str | Path = "reports", only: str | None = None, shard: str | None = None) -> Check:
    """Compute nothing, write nothing: every cell of the profile must be stored and intact, at least one checked,
    and (whole profile) the report equal to the committed ``reports/<profile>/report.json``."""
    sel = select(suite, profile, only, shard)
    if not sel.trials:
        raise UsageError(f"no trial of profile {profile!r} matches --only {only!r}")
    col, rep = assemble(sel.trials, open_store(store))
    out = Check(col.checked, list(col.missing), list(col.corrupt))
    if not Path(reports).is_dir():
        out.problems.append(f"reports folder {reports} does not exist")
    out.problems += [f"corrupt: {c}" for c in col.corrupt] + [f"missing: {m}" for m in col.missing]
    if col.checked == 0:
        out.problems.append("zero cells checked")
    if only or shard:
        return out
    out.committed = committed = Path(reports) / profile / "report.json"
    if not committed.is_file():
        out.problems.append(f"no committed report at {committed}")
        return out
    try:
        old = json.loads(committed.read_text())
    except (OSError, ValueError, RecursionError) as e:
        out.problems.append(f"committed report {committed} is unreadable ({type(e).__name__})")
        return out
    if canonical_json(old) != canonical_json(rep):
        out.problems.append(f"report differs from the committed {committed}")
    return out


def gc(store: str | Path = "cache", *, artifacts: str | Path | None = None, dry_run: bool = False,
       suite: str | Path | Suite | None = None) -> GcResult:
    """Remove leftovers from ``store`` (``dry_run``: list them); with ``suite``, also list the results no profile
    of it references (never removed)."""
    from naspoison.store import maintenance

    st = open_store(store) if dry_run else ResultStore(store)
    referenced = None
    if suite is not None:
        from naspoison.report.collect import collect
        from naspoison.suite import Suite
        from naspoison.suite.expand import expand

        suite = suite if isinstance(suite, Suite) else Suite(suite)
        referenced = set()
        for prof in suite.model.profiles:
            trials = expand(suite, prof).trials
            referenced |= collect(trials, ResultStore(st.root, read_only=True)).keys
    return maintenance.gc(st, artifacts, dry_run, referenced)


# ----------------------------------------------------------------------------- pieces
def load_dataset(name: str | dict, **fields):
    """A dataset as :class:`~naspoison.data.datasets.ImageData` (uint8 images ``[N, H, W, C]``): by name with
    the fields of a suite's ``dataset:`` entry (``train_size``, ``test_size``, ``subset_seed``, ``path``...),
    or by such a dict. E.g. ``load_dataset("digits", train_size=500)``."""
    from naspoison.data.datasets import load_dataset as load

    return load(dict(name, **fields) if isinstance(name, dict) else {"name": name, **fields})


def _genotype(genotype):
    from naspoison.spaces.darts import PUBLISHED, Genotype

    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, str) and genotype in PUBLISHED:
        return PUBLISHED[genotype]
    if isinstance(genotype, dict):
        return Genotype.from_dict(genotype)
    raise ValueError(f"genotype {genotype!r}: a Genotype, its dict, or a published name ({', '.join(PUBLISHED)})")


def compute_metrics(genotype, data, names: list[str] | None = None, *, samples: int = 64, channels: int = 16,
                    layers: int = 5, seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """Training-free metrics (:mod:`naspoison.nas.metrics`; default: every registered one) of a DARTS
    ``genotype`` (a Genotype, its dict or a published name such as ``"darts_v2"``) at a seeded initialisation
    with ``channels`` initial channels and ``layers`` cells, on the first ``samples`` training images of
    ``data`` normalised by their channel statistics."""
    import numpy as np
    import torch

    from naspoison.data.augment import channel_stats
    from naspoison.nas import metrics
    from naspoison.spaces.darts_net import EvalNetwork, Logits

    g = _genotype(genotype)
    x = data.x_train[:samples] / 255.0
    mean, std = channel_stats(data.x_train)
    xt = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)).to(device)
    yt = torch.from_numpy(np.asarray(data.y_train[:samples])).to(device)
    h, _, c = data.shape
    torch.manual_seed(seed)
    net = Logits(EvalNetwork(g, channels, layers, data.num_classes, in_channels=c, auxiliary=False,
                             image_size=h)).to(device)
    return metrics.compute_metrics(net, xt, yt, names if names is not None else list(metrics.METRICS))


def train_genotype(genotype, data, recipe: dict, seed: int = 0, device: str = "cpu",
                   compile: str | bool | None = None) -> dict:
    """Train a DARTS ``genotype`` (a Genotype, its dict or a published name) from scratch on ``data`` with
    ``recipe`` (fields of :class:`~naspoison.train.Recipe`, the rest its published values: ``{}`` is the
    600-epoch P-DARTS retrain) and return the final test accuracy, per-epoch curves and parameter count,
    exactly as a suite's train cell computes them."""
    from naspoison import train
    from naspoison.run import machine

    r = train.Recipe.model_validate(recipe)
    backend = "inductor" if compile is True else (compile or None)
    with machine.using(compile=backend):
        return train.train_genotype(_genotype(genotype), data, r, seed, device)
