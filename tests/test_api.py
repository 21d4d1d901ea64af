"""The Python API (naspoison/api.py) against the command it sits under and against the committed store: the
README's example runs and reproduces committed cells, ``report``/``check``/``plan``/``bench`` give what the
command gives, ``--compile`` reaches the training step without an environment variable, and ``import naspoison``
stays torch-free."""
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, naspoison

import naspoison as nsp
from naspoison.store import ResultStore, canonical_json

SLICE = "family=poisoning,attack=none,algorithm=random,seed=0"


def readme_example() -> str:
    """The first python block of the README's "Python API" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def test_readme_example_runs_and_reproduces_the_committed_cells(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 12  # a short example, as promised
    ns: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), ns)  # noqa: S102 - the README's own code, as a reader runs it
    assert capsys.readouterr().out.startswith("random ")
    # a scratch store, the same keys as the committed demo store's cells (the command computed those): same table
    assert ns["report"] == nsp.report("suite.yaml", "demo", store="cache", only=SLICE)


def test_report_is_the_commands_report(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    got = nsp.report("suite.yaml", "demo", store="cache", out=tmp_path / "api")
    cli = naspoison(REPO, "report", "suite.yaml", "--profile", "demo", "--out", str(tmp_path / "cli"))
    assert cli.returncode == 0, cli.stderr
    assert canonical_json(got) == canonical_json(json.loads((tmp_path / "cli" / "report.json").read_text()))
    assert (tmp_path / "api" / "report.md").read_text() == (tmp_path / "cli" / "report.md").read_text()
    committed = json.loads((REPO / "reports" / "demo" / "report.json").read_text())
    assert canonical_json(got) == canonical_json(committed)


def test_check_and_plan_say_what_the_command_says(monkeypatch):
    monkeypatch.chdir(REPO)
    c = nsp.check("suite.yaml", "demo", store="cache")
    cli = naspoison(REPO, "bench", "suite.yaml", "--profile", "demo", "--check")
    assert c.ok and cli.returncode == 0
    assert f"check: {c.checked} cells verified, 0 missing, 0 corrupt" in cli.stdout
    p = nsp.plan("suite.yaml", "demo", store="cache")
    assert p.rows and all(r.missing == 0 and r.cached > 0 for r in p.rows)  # the committed store is complete
    part = nsp.check("suite.yaml", "demo", store="cache", only=SLICE)
    assert part.ok and part.committed is None and 0 < part.checked < c.checked  # a slice is not compared


def test_bench_computes_what_the_command_computes(tiny):
    d = tiny(seeds=1, epochs=1)
    cli = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--only", "attack=none|gaussian_noise",
                    "--store", str(d / "by_cli"))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    events = []
    summary = nsp.bench(d / "suite.yaml", "tiny", store=d / "by_api", only="attack=none|gaussian_noise",
                        devices="cpu", artifacts=d / "artifacts_api", progress=events.append)
    said = {stage: int(n) for n, stage in re.findall(r"(\d+) (\w+)", cli.stdout.split("computed ")[-1].split(" in ")[0])}
    assert summary.computed == said and not summary.failed
    assert events[0]["kind"] == "begin" and sum(e["kind"] == "done" for e in events) == sum(said.values())

    def results(root):
        s = ResultStore(root, read_only=True)
        return {(p.parent.name, p.stem): s.load_file(p).result for p in s.iter_files()}

    # the same cells with the same results (wall times are provenance, not results)
    a, b = results(d / "by_cli"), results(d / "by_api")
    assert a.keys() == b.keys() and all(canonical_json(a[k]) == canonical_json(b[k]) for k in a)
    again = nsp.bench(d / "suite.yaml", "tiny", store=d / "by_api", only="attack=none|gaussian_noise", devices="cpu",
                      artifacts=d / "artifacts_api")
    assert again.computed == {} and again.failed == []


def test_bad_input_is_a_usage_error(tiny):
    d = tiny(seeds=1, epochs=1)
    with pytest.raises(nsp.UsageError, match="--only is empty"):
        nsp.bench(d / "suite.yaml", "tiny", store=d / "s", only=" ")
    with pytest.raises(nsp.UsageError, match="no trial of profile 'tiny' matches"):
        nsp.plan(d / "suite.yaml", "tiny", store=d / "s", only="attack=gausian_noise")
    with pytest.raises(nsp.UsageError, match="not cpu or cuda:N"):
        nsp.bench(d / "suite.yaml", "tiny", store=d / "s", devices="gpu0")
    with pytest.raises(nsp.UsageError, match="does not exist"):
        nsp.report(d / "suite.yaml", "tiny", store=d / "nowhere")
    assert not (d / "s").exists() or not any((d / "s").rglob("*.json"))  # nothing ran


def test_compile_reaches_the_training_step_without_the_environment(tiny, monkeypatch):
    import torch

    from naspoison.run import machine, slurm

    d = tiny(seeds=1, epochs=1)
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, backend: calls.append(backend) or model)
    nsp.bench(d / "suite.yaml", "tiny", store=d / "s", only="attack=none", devices="cpu", artifacts=d / "a",
              compile="eager")
    assert calls == ["eager"]  # the one train cell's step (a random search trains nothing)
    assert machine.current().compile is None and not any("COMPILE" in k for k in os.environ)
    # other processes get it from the run: a pool worker's initializer, a pickled submitit task
    seen = []
    machine.init_worker(machine.Machine(compile="inductor"), lambda x: seen.append((x, machine.current().compile)), 7)
    assert seen == [(7, "inductor")]
    machine.apply(machine.Machine())
    with machine.using(compile="eager"):
        task = pickle.loads(pickle.dumps(slurm.GroupTask()))
    assert task.settings.compile == "eager" and machine.current().compile is None


def test_train_genotype_reproduces_a_committed_train_cell():
    store = ResultStore(REPO / "cache", read_only=True)
    rec = next(r for r in map(store.load_file, sorted(store.iter_files()))
               if r.stage == "train" and not r.spec["upstream"] and r.spec["params"]["recipe"]["epochs"] <= 3)
    p = rec.spec["params"]
    got = nsp.train_genotype(p["genotype"], nsp.load_dataset(p["dataset"]), p["recipe"], seed=p["seed"])
    assert got["test_acc"] == rec.result["test_acc"] and got["params"] == rec.result["params"]


def test_compute_metrics_is_seeded_and_reads_labels_only_where_declared():
    from naspoison.nas.metrics import METRICS

    data = nsp.load_dataset("digits", train_size=200, test_size=50)
    names = ["synflow", "snip", "grad_norm"]
    kw = {"samples": 32, "channels": 4, "layers": 3}
    first = nsp.compute_metrics("darts_v2", data, names, seed=1, **kw)
    assert first == nsp.compute_metrics("darts_v2", data, names, seed=1, **kw)
    assert first != nsp.compute_metrics("darts_v2", data, names, seed=2, **kw)  # another initialisation
    from dataclasses import replace

    relabelled = replace(data, y_train=(data.y_train + 1) % data.num_classes)
    other = nsp.compute_metrics("darts_v2", relabelled, names, seed=1, **kw)
    for m in names:
        assert (other[m] == first[m]) == (not METRICS[m].needs_labels), m
    assert all(np.isfinite(v) for v in first.values())


def test_import_naspoison_is_torch_free_and_report_stays_the_function():
    # importing the subpackage naspoison.report must not rebind naspoison.report (the function)
    code = ("import sys, naspoison\nfrom naspoison.report import render\nimport naspoison.report.collect\n"
            "assert naspoison.report is naspoison.api.report and callable(naspoison.bench)\n"
            "print([m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert nsp.attacks.__name__ == "naspoison.attacks" and "gaussian_noise" in nsp.attacks.ATTACKS
    assert nsp.nas.__name__ == "naspoison.nas" and "random" in nsp.nas.ALGORITHMS
