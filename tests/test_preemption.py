"""The time-limit / preemption path of ``--executor slurm``, run through submitit's local executor: a task
whose time limit is shorter than its cell gets the signal, checkpoints the cell, is requeued, and the
requeued task finishes it with the bits of an uninterrupted run."""
import os

import pytest

from naspoison.run import checkpoint
from naspoison.store import ArtifactCache, ResultStore, canonical_json, content_key
from naspoison.suite import Suite
from naspoison.suite.expand import expand, select

submitit = pytest.importorskip("submitit")


@pytest.mark.slow
def test_a_cell_longer_than_the_time_limit_finishes_through_requeues(tiny, monkeypatch):
    from naspoison.run import slurm
    from naspoison.run.executor import run_trials

    d = tiny(seeds=1, epochs=30)
    trials = select(expand(Suite(d / "suite.yaml"), "tiny").trials, "family=poisoning,attack=none")
    assert len(trials) == 1
    reference = ResultStore(d / "ref")
    assert not run_trials(trials, reference, ArtifactCache(d / "a0")).failed
    tspec = trials[0].train_spec(reference.get("search", content_key(trials[0].search)).result)

    # no periodic saves: only the checkpoint written when the signal comes lets the cell progress
    monkeypatch.setenv(checkpoint.EVERY_ENV, "3600")
    store = ResultStore(d / "sub")
    # a one-minute limit (submitit's smallest), the signal 40 s before it: about 20 s per task run
    resources = {"time_min": 1, "signal_delay_s": 40, "cpus_per_task": 1, "mem_gb": 2, "gpus_per_task": 0}
    jobs = slurm.submit(trials, store, ArtifactCache(d / "a1"), 1, resources, cluster="local",
                        folder=d / "sub/.slurm/%j")
    summary = slurm.wait(jobs, emit=print, poll=1.0)
    assert not summary.failed, summary.failed
    rec = store.get("train", content_key(tspec))
    assert rec is not None
    resumed = rec.provenance["checkpoint"]["resumed"]
    assert resumed and all(r["name"] == "fit" for r in resumed), rec.provenance
    logs = "".join(p.read_text() for p in (d / "sub/.slurm").rglob("*_log.*"))
    assert "checkpointed the running cell" in logs and "Requeued" in logs, logs
    print(f"requeued {len(resumed)} time(s), resumed at epochs {[r['epoch'] for r in resumed]}")
    assert canonical_json(rec.result) == canonical_json(reference.get("train", content_key(tspec)).result)
    assert checkpoint.keys(ArtifactCache(d / "a1")) == []
    assert os.environ[checkpoint.EVERY_ENV] == "3600"
