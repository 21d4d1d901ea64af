"""Many machines through submitit: one job-array task per group of trials, each task writing straight
into the shared store (its locks keep two tasks off one cell), no coordinator. The same command rerun
resumes (only missing cells are computed) or, once everything is stored, just collects the report.

``cluster="slurm"`` submits to SLURM; ``cluster="local"`` runs the same array as local processes
through submitit's own local executor (what the tests and CI use).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from naspoison.run import checkpoint, machine
from naspoison.run.executor import RunSummary, is_complete, run_parallel
from naspoison.store import ArtifactCache, ResultStore
from naspoison.families import Trial
from naspoison.suite.expand import shard

MAX_REQUEUES = 50


def groups(trials: list[Trial], n: int) -> list[list[Trial]]:
    """Task i runs what ``--shard i/N`` would: every N-th trial, a mix of cheap and costly ones."""
    return [g for g in (shard(trials, f"{i}/{n}") for i in range(n)) if g]


def stored(trial: Trial, store: ResultStore) -> bool:
    """Every cell of ``trial`` and of the trials it needs is in ``store``: no task needed."""
    return all(is_complete(t, store) for t in (*trial.requires, trial))


def run_group(trials: list[Trial], store_root: str, artifact_dir: str, poll: float = 5.0) -> dict:
    """One array task: every trial of its group, one queue worker per GPU the task was given (else the CPU)."""
    import torch

    n = torch.cuda.device_count()
    devices = [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    artifacts = ArtifactCache(artifact_dir)
    try:
        summary = run_parallel(trials, ResultStore(store_root), artifacts, devices, poll=poll,
                               emit=lambda e: print(_line(e), flush=True) if e["kind"] not in ("trial", "start") else None)
    finally:
        artifacts.close()
    return {"computed": summary.computed, "failed": summary.failed, "trials_done": summary.trials_done,
            "device": ",".join(devices)}


class GroupTask:
    """What each array task runs (:func:`run_group`), checkpointable the submitit way: on the time-limit or
    preemption signal (USR2, ``signal_delay_s`` before the limit) submitit calls :meth:`checkpoint`, which
    writes the running cell's state at its last epoch boundary to the artifact cache and returns the same
    task for requeueing; the requeued task skips the stored cells and resumes that one. Cells run by extra
    worker processes (several GPUs per task) lose at most the checkpoint interval."""

    def __init__(self, settings: machine.Machine | None = None):
        self.settings = settings or machine.current()  # the submitting run's (--compile), pickled with the task

    def __call__(self, trials: list[Trial], store_root: str, artifact_dir: str, poll: float = 5.0) -> dict:
        checkpoint.keep_snapshots(True)
        machine.apply(self.settings)
        return run_group(trials, store_root, artifact_dir, poll)

    def checkpoint(self, *args, **kwargs):
        import submitit

        if checkpoint.save_snapshot_now():
            print("checkpointed the running cell at its last epoch boundary before the requeue", flush=True)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _line(e: dict) -> str:
    if e["kind"] == "log":
        return f"{e['label']}: {e['message']}"
    if e["kind"] == "done":
        return f"{e['stage']} {e['label']} ({e['seconds']:.1f} s)"
    return f"FAILED {e.get('stage', '')} {e['label']}: {e.get('error')}"


def executor(cluster: str, folder: Path, resources: dict, n_tasks: int):
    try:
        import submitit
    except ImportError as e:  # an optional extra
        raise RuntimeError("--executor slurm needs submitit: pip install 'naspoison[slurm]'") from e
    # a requeue after each time limit: a 24-hour cell under a 4-hour limit needs six, so allow plenty
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster, **{f"{cluster}_max_num_timeout": MAX_REQUEUES})
    ex.update_parameters(name="naspoison", timeout_min=resources["time_min"], cpus_per_task=resources["cpus_per_task"],
                         mem_gb=resources["mem_gb"], gpus_per_node=resources["gpus_per_task"], tasks_per_node=1, nodes=1)
    if resources.get("signal_delay_s"):  # how long before the limit the checkpoint signal comes
        if cluster == "slurm":
            ex.update_parameters(slurm_signal_delay_s=resources["signal_delay_s"])
        else:  # AutoExecutor does not pass it on to the local executor
            ex._executor.update_parameters(signal_delay_s=resources["signal_delay_s"])
    if cluster == "slurm":
        extra = {"slurm_array_parallelism": resources.get("array_parallelism") or n_tasks,
                 "slurm_additional_parameters": dict(resources.get("additional") or {})}
        if resources.get("partition"):
            extra["slurm_partition"] = resources["partition"]
        ex.update_parameters(**extra)
    return ex


def submit(trials: list[Trial], store: ResultStore, artifacts: ArtifactCache, n_tasks: int, resources: dict,
           cluster: str = "slurm", folder: Path | None = None) -> list:
    """Submit one array task per group; returns the submitit jobs."""
    parts = groups(trials, n_tasks)
    folder = folder or store.root / ".slurm" / "%j"
    ex = executor(cluster, folder, resources, len(parts))
    root, adir = str(store.root), str(artifacts.directory)
    return ex.map_array(GroupTask(), parts, [root] * len(parts), [adir] * len(parts))


def wait(jobs: list, emit: Callable[[str], None], poll: float = 10.0) -> RunSummary:
    """Wait for every job, reporting each as it ends; a task that crashed is a failure, not an exception."""
    total = RunSummary()
    left = list(jobs)
    while left:
        still = []
        for job in left:
            if not job.done():
                still.append(job)
                continue
            try:
                r = job.result()
            except Exception as e:  # noqa: BLE001 - a killed or crashed task: its cells are retried next run
                total.failed.append(f"task {job.job_id}: {type(e).__name__}: {str(e).strip().splitlines()[-1:]}")
                emit(f"task {job.job_id} failed (log: {job.paths.stderr})")
                continue
            part = RunSummary(computed=r["computed"], failed=r["failed"], trials_done=r["trials_done"])
            total.merge(part)
            emit(f"task {job.job_id} on {r['device']}: {r['trials_done']} trials, computed "
                 + (", ".join(f"{v} {k}" for k, v in sorted(r["computed"].items())) or "nothing"))
        left = still
        if left:
            time.sleep(poll)
    return total
