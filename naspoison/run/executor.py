"""Executing trials: each cell is claimed through the store's lock, computed, and written
atomically. Any number of workers (processes here, other machines via ``--shard`` or SLURM) can
share one store without a coordinator; a rerun computes only what is missing.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from naspoison.run import checkpoint, machine, stages
from naspoison.store import ArtifactCache, CorruptRecord, ResultStore, content_key
from naspoison.suite.expand import EvasTrial, SensitivityTrial, Trial

Event = dict  # {"kind": "done"|"failed"|"cached", "stage", "label", "key", "seconds", "error"?}


@dataclass
class RunSummary:
    computed: dict[str, int] = field(default_factory=dict)   # stage -> cells computed by this run
    failed: list[str] = field(default_factory=list)         # "label (stage): error"
    trials_done: int = 0

    def merge(self, other: RunSummary) -> None:
        for k, v in other.computed.items():
            self.computed[k] = self.computed.get(k, 0) + v
        self.failed += other.failed
        self.trials_done += other.trials_done


class _Blocked(Exception):
    """Another live worker holds this cell."""


def _ensure(store: ResultStore, spec: dict, compute: Callable[[str], dict], device: str, label: str,
            emit: Callable[[Event], None], summary: RunSummary) -> dict:
    """The cell's result: read from the store, or claimed, computed on ``device`` and stored."""
    stage, key = spec["stage"], content_key(spec)
    rec = store.get(stage, key)  # CorruptRecord propagates: never overwrite a bad file silently
    if rec is not None:
        return rec.result
    with store.claim(key) as mine:
        if not mine:
            raise _Blocked(key)
        rec = store.get(stage, key)  # finished by another worker while we waited
        if rec is not None:
            return rec.result
        t0 = time.perf_counter()
        emit({"kind": "start", "stage": stage, "label": label, "key": key})
        result = stages.run_stage(store, spec, compute, device)
        summary.computed[stage] = summary.computed.get(stage, 0) + 1
        emit({"kind": "done", "stage": stage, "label": label, "key": key,
              "seconds": time.perf_counter() - t0})
        return result


def run_trial(trial: Trial, store: ResultStore, artifacts: ArtifactCache, device: str,
              emit: Callable[[Event], None], summary: RunSummary) -> None:
    ds, label = trial.dataset, trial.label
    checkpoint.bind(artifacts)  # long loops of this trial's cells checkpoint here

    def log(message: str) -> None:
        emit({"kind": "log", "label": label, "message": message})

    if isinstance(trial, EvasTrial):
        found = None
        if trial.search is not None:
            sds = trial.search_dataset or ds  # the search may have run on another dataset than this row's
            found = _ensure(store, trial.search, lambda d: stages.compute_evas_search(trial.search, sds, artifacts, d, log),
                            device, label, emit, summary)
        backdoor = None  # a scenario treats the backdoor cell before it
        for spec in trial.after_search(found):
            if spec["stage"] == "backdoor":
                backdoor, compute = spec, (lambda d, s=spec: stages.compute_backdoor(s, ds, artifacts, d, log))
            elif spec["stage"] == "scenario":
                compute = (lambda d, s=spec, b=backdoor: stages.compute_scenario(s, b, ds, artifacts, d, log, store))
            elif spec["stage"] == "defense":
                compute = (lambda d, s=spec, b=backdoor: stages.compute_defense(s, b, ds, artifacts, d, log, store))
            else:
                compute = (lambda d, s=spec: stages.compute_evas_score(s, ds, artifacts, d))
            _ensure(store, spec, compute, device, label, emit, summary)
        return
    if isinstance(trial, SensitivityTrial):
        if trial.poison is not None:
            _ensure(store, trial.poison, lambda d: stages.compute_poison(trial.poison, ds, artifacts, d, store, log),
                    device, label, emit, summary)
        _ensure(store, trial.cell,
                lambda d: stages.compute_metric_cell(trial.cell, trial.poison, ds, artifacts, d, log, store),
                device, label, emit, summary)
        return
    for needed in trial.requires:  # a NAS-aware attack's victim: the clean trials of its algorithm
        run_trial(needed, store, artifacts, device, emit, summary)
    if trial.poison is not None:
        _ensure(store, trial.poison, lambda d: stages.compute_poison(trial.poison, ds, artifacts, d, store, log),
                device, label, emit, summary)
    if trial.sanitize is not None:  # a defended search: the countermeasure first
        _ensure(store, trial.sanitize,
                lambda d: stages.compute_sanitize(trial.sanitize, trial.poison, ds, artifacts, d, store, log),
                device, label, emit, summary)
    sds = trial.search_dataset or ds  # an out-of-distribution search reads another dataset
    found = _ensure(store, trial.search,
                    lambda d: stages.compute_search(trial.search, trial.poison, sds, artifacts, d, log, store,
                                                    trial.sanitize),
                    device, label, emit, summary)
    tspec = trial.train_spec(found)
    _ensure(store, tspec, lambda d: stages.compute_train(tspec, ds, d, artifacts), device, label, emit, summary)


def attempt(trial: Trial, store: ResultStore, artifacts: ArtifactCache, device: str,
            emit: Callable[[Event], None], summary: RunSummary) -> bool:
    """Run one trial; False when its next cell is in another live worker's hands (try again later).
    A failure is recorded (the store's .failures, the summary) and does not stop the caller."""
    try:
        run_trial(trial, store, artifacts, device, emit, summary)
        summary.trials_done += 1
        emit({"kind": "trial", "label": trial.label})
    except _Blocked:
        return False
    except (KeyboardInterrupt, BrokenPipeError):
        raise  # the user stopped it, or the output was closed (| head): not a failure of the cell
    except CorruptRecord as e:
        summary.failed.append(f"{trial.label}: {e} (run `naspoison verify`)")
        emit({"kind": "failed", "label": trial.label, "error": str(e)})
    except Exception as e:  # noqa: BLE001 - record, continue with the rest, retry next run
        spec = _failing_spec(trial, store)
        store.record_failure(spec, e)
        summary.failed.append(f"{trial.label} ({spec['stage']}): {type(e).__name__}: {e}")
        emit({"kind": "failed", "label": trial.label, "stage": spec["stage"], "error": f"{type(e).__name__}: {e}"})
    return True


def run_trials(trials: list[Trial], store: ResultStore, artifacts: ArtifactCache, device: str = "cpu",
               emit: Callable[[Event], None] = lambda e: None, poll: float = 0.5) -> RunSummary:
    """Run every trial; a trial whose next cell another worker holds is revisited later."""
    summary = RunSummary()
    pending = list(trials)
    try:
        while pending:
            waiting = [t for t in pending if not attempt(t, store, artifacts, device, emit, summary)]
            if waiting and len(waiting) == len(pending):
                time.sleep(poll)  # everything left is in other workers' hands
            pending = waiting
    finally:
        checkpoint.bind(None)  # the caller closes this cache: a later cell in this process must not write to it
    return summary


def _failing_spec(trial: Trial, store: ResultStore) -> dict:
    """The first cell of the trial (its required trials first) that has no result: the one that failed."""
    for needed in trial.requires:
        if not is_complete(needed, store):
            return _failing_spec(needed, store)
    for spec in (trial.poison, getattr(trial, "sanitize", None), trial.search):
        if spec is not None and not store.has(spec["stage"], content_key(spec)):
            return spec
    cells = trial.after_search(_found(trial, store))
    return next((c for c in cells if not store.has(c["stage"], content_key(c))), cells[-1])


def _found(trial, store: ResultStore) -> dict | None:
    """The trial's search result (None for a fixed-architecture Evas row); KeyError if not stored yet."""
    if trial.search is None:
        return None
    rec = store.get(trial.search["stage"], content_key(trial.search))
    if rec is None:
        raise KeyError(content_key(trial.search))
    return rec.result


def is_complete(trial: Trial, store: ResultStore) -> bool:
    try:
        cells = trial.after_search(_found(trial, store))
    except KeyError:
        return False
    return all(store.has(c["stage"], content_key(c)) for c in cells)


# ----------------------------------------------------------------------------- many workers
def die_with_parent(parent_pid: int) -> None:
    """In a worker or manager process: exit when the process that started it dies, even by ``kill -9`` (which
    runs no cleanup in the parent). Linux: the kernel sends SIGKILL (PR_SET_PDEATHSIG); elsewhere a thread
    polls the parent. Either way no orphan keeps computing a run nobody waits for."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _worker(args) -> RunSummary:
    """Take trial indices from the shared queue until it is empty; a blocked trial goes to the back."""
    import queue as q

    import torch

    trials, store_root, artifact_dir, device, threads, tasks, events, poll = args
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only possible before any inter-op work; the cells' bits do not need it
        torch.set_num_interop_threads(threads)
    store = ResultStore(store_root)
    artifacts = ArtifactCache(artifact_dir)
    summary = RunSummary()
    try:
        while True:
            try:
                i = tasks.get_nowait()
            except q.Empty:
                return summary
            if not attempt(trials[i], store, artifacts, device, events.put, summary):
                tasks.put(i)
                time.sleep(poll)  # its cell is being computed elsewhere; meanwhile others take the rest
    finally:
        artifacts.close()


def run_parallel(trials: list[Trial], store: ResultStore, artifacts: ArtifactCache, devices: list[str],
                 emit: Callable[[Event], None], poll: float = 0.5) -> RunSummary:
    """One worker process per entry of ``devices``, each cell computed on its worker's device. Trials
    are handed out through a queue in suite order, so a long cell holds up only its own worker."""
    if len(devices) == 1:
        return run_trials(trials, store, artifacts, devices[0], emit, poll)
    ctx = mp.get_context("spawn")
    threads = stages.cell_threads()  # not cores // workers: a result must not depend on --workers
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=ctx)
    manager.start(die_with_parent, (os.getpid(),))
    tasks, events = manager.Queue(), manager.Queue()
    for i in range(len(trials)):
        tasks.put(i)
    jobs = [(trials, str(store.root), str(artifacts.directory), dev, threads, tasks, events, poll) for dev in devices]
    total = RunSummary()
    with ctx.Pool(len(devices), initializer=machine.init_worker, initargs=(machine.current(), die_with_parent, os.getpid())) as pool:
        result = pool.map_async(_worker, jobs)
        while not result.ready():
            _drain(events, emit, timeout=0.2)
        _drain(events, emit, timeout=0)
        summaries = result.get()
    manager.shutdown()
    for s in summaries:
        total.merge(s)  # each trial was taken by one worker
    total.failed = sorted(set(total.failed))
    return total


def _drain(queue, emit, timeout: float) -> None:
    import queue as q

    try:
        emit(queue.get(timeout=timeout) if timeout else queue.get_nowait())
        while True:
            emit(queue.get_nowait())
    except q.Empty:
        pass
