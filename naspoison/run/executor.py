"""Executing trials: each cell is claimed through the store's lock, computed, and written
atomically. Any number of workers (processes here, other machines via ``--shard`` or SLURM) can
share one store without a coordinator; a rerun computes only what is missing.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as q
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager

from naspoison.families import Step, Trial, walk, walk_store
from naspoison.run import checkpoint, machine
from naspoison.run.cell import cell_threads, run_stage
from naspoison.stages import STAGES, StageContext
from naspoison.store import ArtifactCache, CorruptRecord, ResultStore, content_key

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


def _ensure(store: ResultStore, step: Step, artifacts: ArtifactCache, device: str, label: str,
            emit: Callable[[Event], None], summary: RunSummary) -> dict:
    """The cell's result: read from the store, or claimed, computed on ``device`` by its stage and stored."""
    stage, key = step.stage, content_key(step.spec)
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
        log = lambda message: emit({"kind": "log", "label": label, "message": message})  # noqa: E731
        result = run_stage(store, step.spec,
                           lambda d: compute_step(step.spec, step.inputs, step.dataset, artifacts, d, store, log), device)
        summary.computed[stage] = summary.computed.get(stage, 0) + 1
        emit({"kind": "done", "stage": stage, "label": label, "key": key,
              "seconds": time.perf_counter() - t0})
        return result


def compute_step(spec: dict, inputs: dict[str, dict | None], dataset: dict, artifacts: ArtifactCache | None,
                 device: str, store: ResultStore | None, log: Callable[[str], None]) -> dict:
    """Compute cell ``spec`` through the stage registry; ``inputs``: the upstream specs at hand (name -> spec or
    None), of which the stage receives the ones it declares."""
    stage = STAGES[spec["stage"]]
    return stage.compute(spec, {name: inputs.get(name) for name in stage.inputs},
                         StageContext(dataset, artifacts, device, store, log))


def run_trial(trial: Trial, store: ResultStore, artifacts: ArtifactCache, device: str,
              emit: Callable[[Event], None], summary: RunSummary) -> None:
    """Every cell of ``trial`` (and of the trials it requires) computed or read, in order."""
    checkpoint.bind(artifacts)  # long loops of this trial's cells checkpoint here
    for needed in trial.requires:  # a NAS-aware attack's victim: the clean trials of its algorithm
        run_trial(needed, store, artifacts, device, emit, summary)
    walk(trial, lambda step: _ensure(store, step, artifacts, device, trial.label, emit, summary))


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
    cells = walk_store(trial, store)
    return next((step.spec for step, result in cells if result is None), cells[-1][0].spec)


def is_complete(trial: Trial, store: ResultStore) -> bool:
    """Every cell of the trial is in the store."""
    return all(result is not None for _, result in walk_store(trial, store))


# ----------------------------------------------------------------------------- many workers
def die_with_parent(parent_pid: int) -> None:
    """In a worker or manager process: exit when the process that started it dies, even by ``kill -9`` (which
    runs no cleanup in the parent). Linux: the kernel sends SIGKILL (PR_SET_PDEATHSIG); elsewhere a thread
    polls the parent. Either way no orphan keeps computing a run nobody waits for."""
    if sys.platform.startswith("linux"):
        try:
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
    threads = cell_threads()  # not cores // workers: a result must not depend on --workers
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
    try:
        emit(queue.get(timeout=timeout) if timeout else queue.get_nowait())
        while True:
            emit(queue.get_nowait())
    except q.Empty:
        pass
