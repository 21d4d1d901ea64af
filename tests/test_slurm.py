"""The SLURM side of ``--executor slurm`` without a cluster: the sbatch script submitit would submit for
the profile's resources, and the grouping of trials into array tasks (the end-to-end run through
submitit's local executor is in test_pipeline.py)."""
import os

import pytest

from naspoison.suite.schema import SlurmResources

submitit = pytest.importorskip("submitit")


def test_sbatch_script_carries_the_resources(tmp_path, monkeypatch):
    from naspoison.run.slurm import executor

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")  # submitit looks for srun
    r = SlurmResources(partition="gpu", time_min=2880, gpus_per_task=2, cpus_per_task=12, mem_gb=96,
                       additional={"account": "nas"}).model_dump()
    text = executor("slurm", tmp_path / "%j", r, n_tasks=7)._executor._make_submission_file_text("python x", "u")
    for line in ("--partition=gpu", "--time=2880", "--gpus-per-node=2", "--cpus-per-task=12", "--mem=96GB",
                 "--account=nas", "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in text, text
    assert executor("slurm", tmp_path / "%j", r, n_tasks=7)._executor.parameters["array_parallelism"] == 7


def test_groups_are_the_shards():
    from naspoison.run.slurm import groups
    from naspoison.suite.expand import shard

    trials = list(range(10))
    assert groups(trials, 3) == [shard(trials, "0/3"), shard(trials, "1/3"), shard(trials, "2/3")]
    assert sorted(t for g in groups(trials, 4) for t in g) == trials
    assert groups(trials[:2], 5) == [[0], [1]]  # no empty tasks
