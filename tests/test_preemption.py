"""The time-limit / preemption path of ``--executor slurm``, run through submitit's local executor: a task
whose time limit is shorter than its cell gets the signal, checkpoints the cell, is requeued, and the
requeued task finishes it with the bits of an uninterrupted run."""
import os
import subprocess
import sys
import time

import pytest

from naspoison.families import walk_store
from naspoison.run import checkpoint
from naspoison.store import ArtifactCache, ResultStore, canonical_json, content_key
from naspoison.suite import Suite
from naspoison.suite.expand import expand, select

from conftest import REPO

submitit = pytest.importorskip("submitit")


@pytest.mark.slow
def test_a_cell_longer_than_the_time_limit_finishes_through_requeues(tiny, monkeypatch):
    from naspoison.run import slurm
    from naspoison.run.executor import run_trials

    d = tiny(seeds=1, epochs=30)
    trials = select(expand(Suite(d / "suite.yaml"), "tiny").trials, "family=poisoning,attack=none")
    assert len(trials) == 1
    reference = ResultStore(d / "ref")
    t0 = time.perf_counter()
    assert not run_trials(trials, reference, ArtifactCache(d / "a0")).failed
    cell_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # what a task spends starting up
    subprocess.run([sys.executable, "-c", "import naspoison.run.slurm, naspoison.train"], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    start_s = time.perf_counter() - t0
    tspec = walk_store(trials[0], reference)[-1][0].spec  # search, train

    # no periodic saves: only the checkpoint written when the signal comes lets the cell progress
    monkeypatch.setenv(checkpoint.EVERY_ENV, "3600")
    store = ResultStore(d / "sub")
    # a one-minute limit (submitit's smallest), the signal early enough that each task run gets about a third
    # of the cell, whatever this machine's speed (submitit's local controller restarts a task at most 5 times)
    run_s = min(55.0, max(8.0, start_s + 2 + cell_s / 3))
    resources = {"time_min": 1, "signal_delay_s": int(60 - run_s), "cpus_per_task": 1, "mem_gb": 2, "gpus_per_task": 0}
    jobs = slurm.submit(trials, store, ArtifactCache(d / "a1"), 1, resources, cluster="local",
                        folder=d / "sub/.slurm/%j")
    summary = slurm.wait(jobs, emit=print, poll=1.0)
    assert not summary.failed, summary.failed
    rec = store.get("train", content_key(tspec))
    assert rec is not None
    resumed = rec.provenance["checkpoint"]["resumed"]
    assert resumed and all(r["name"] == "fit" for r in resumed), rec.provenance
    epochs = [r["epoch"] for r in resumed]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)  # each requeue got further
    logs = "".join(p.read_text() for p in (d / "sub/.slurm").rglob("*_log.*"))
    assert "checkpointed the running cell" in logs and "Requeued" in logs, logs
    print(f"requeued {len(resumed)} time(s), resumed at epochs {[r['epoch'] for r in resumed]}")
    assert canonical_json(rec.result) == canonical_json(reference.get("train", content_key(tspec)).result)
    assert checkpoint.keys(ArtifactCache(d / "a1")) == []
    assert os.environ[checkpoint.EVERY_ENV] == "3600"
