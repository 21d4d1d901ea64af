"""Issue 24's before/after table: run each hostile attempt against a checkout and classify the outcome.

    PYTHONPATH=CHECKOUT python benchmarks/hostile_attempts.py --out table.json [--ro-mount DIR]

Each attempt runs ``naspoison.cli.main`` in-process with stdout/stderr captured (an exception escaping
``main`` is a *traceback*); a nonzero exit without one is a *clear error*; exit 0 on a hostile input is
*silent*. Attempts that could hang or eat memory (alias bomb, a billion seeds) run in a subprocess with a
time and memory limit. Commands that would start computing run against a stub executor, so nothing trains.
``--ro-mount`` names an empty read-only mount point (a real read-only store; needs root to create).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HOSTILE = Path(__file__).resolve().parents[1] / "tests" / "hostile"


def arrays(n=20, classes=3, **changes):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
    y = np.arange(n) % classes
    a = {"x_train": x[: n // 2], "y_train": y[: n // 2], "x_test": x[n // 2:], "y_test": y[n // 2:]}
    a.update(changes)
    return {k: v for k, v in a.items() if v is not None}


NPZ = {
    "npz: missing file": None,
    "npz: not a zip": b"this is not an npz",
    "npz: float images": arrays(x_train=np.zeros((10, 6, 6), np.float32)),
    "npz: mismatched lengths": arrays(y_train=np.arange(9) % 3),
    "npz: empty test set": arrays(x_test=np.zeros((0, 6, 6, 1), np.uint8), y_test=np.zeros(0, np.int64)),
    "npz: one class": arrays(y_train=np.zeros(10, np.int64), y_test=np.zeros(10, np.int64)),
    "npz: test label beyond train classes": arrays(y_test=np.full(10, 5)),
    "npz: float labels": arrays(y_train=(np.arange(10) % 3) + 0.7),
    "npz: pickled objects": arrays(y_train=np.array([{"a": 1}] * 10, dtype=object)),
}


def in_process(argv, stub_run=True):
    from naspoison.cli import main
    from naspoison.run import executor

    seen = {}

    def stub(trials, store, artifacts, devices, emit, poll=0.5):
        seen["devices"] = devices
        return executor.RunSummary()

    real = executor.run_parallel
    if stub_run:
        executor.run_parallel = stub
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:
                rc = e.code
    except BaseException as e:  # noqa: BLE001 - escaped main: a traceback for the user
        return {"outcome": "traceback", "detail": f"{type(e).__name__}: {str(e)[:100]}"}
    finally:
        executor.run_parallel = real
    text = (err.getvalue() + out.getvalue()).strip().splitlines()
    line = next((x for x in text if x.strip()), "")
    if rc == 0:
        return {"outcome": "silent (exit 0)", "detail": (f"ran on {seen['devices']}" if seen else line)[:110]}
    return {"outcome": f"clear error (exit {rc})", "detail": line[:110]}


def subprocess_attempt(argv, timeout=30):
    code = f"import sys; from naspoison.cli import main; sys.exit(main({[str(a) for a in argv]!r}))"
    limit = "ulimit -v 4000000; "
    try:
        p = subprocess.run(["bash", "-c", limit + f"exec {sys.executable} -c {json.dumps(code)}"],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"outcome": f"hang (killed after {timeout} s)", "detail": ""}
    if "Traceback" in p.stderr or "MemoryError" in p.stderr:
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        return {"outcome": "traceback", "detail": last[:110]}
    line = (p.stderr.strip() or p.stdout.strip()).splitlines()[:1]
    return {"outcome": "silent (exit 0)" if p.returncode == 0 else f"clear error (exit {p.returncode})",
            "detail": (line[0] if line else "")[:110]}


def main_(args):
    from naspoison.store import ResultStore

    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    rows = {}
    good = tmp / "good.yaml"
    good.write_text((HOSTILE / "base.yaml").read_text().replace("{name: npz, path: data.npz}",
                                                                "{name: digits, train_size: 50}"))
    store, art, reports = tmp / "store", tmp / "art", tmp / "reports"
    common = ["--store", store, "--artifacts", art, "--reports", reports]

    for name in ("alias_bomb.yaml", "huge_grid.yaml"):
        rows[f"suite: {name}"] = subprocess_attempt(["bench", HOSTILE / name, "--plan", "--store", tmp / "s0"])
    for name in ("recursive_alias.yaml", "inf_lr.yaml", "nan_budget.yaml", "version2.yaml", "unknown_top_key.yaml",
                 "python_tag.yaml"):
        rows[f"suite: {name}"] = in_process(["bench", HOSTILE / name, "--plan", "--store", tmp / "s0"])
    (tmp / "garbage.yaml").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    rows["suite: binary garbage"] = in_process(["bench", tmp / "garbage.yaml", "--plan", "--store", tmp / "s0"])

    for name, content in NPZ.items():
        d = tmp / name.replace(" ", "_").replace(":", "")
        d.mkdir()
        shutil.copy(HOSTILE / "base.yaml", d / "suite.yaml")
        if isinstance(content, bytes):
            (d / "data.npz").write_bytes(content)
        elif content is not None:
            np.savez(d / "data.npz", **content)
        rows[name + " (--plan)"] = in_process(["bench", d / "suite.yaml", "--plan", "--store", d / "store"])

    rows["flag: --workers 0"] = in_process(["bench", good, "--workers", "0", *common])
    rows["flag: --workers -5"] = in_process(["bench", good, "--workers", "-5", *common])
    rows["flag: --devices ,"] = in_process(["bench", good, "--devices", ",", *common])
    rows["flag: --devices cuda:0 (no GPU)"] = in_process(["bench", good, "--devices", "cuda:0", *common])
    rows["flag: --only ''"] = in_process(["bench", good, "--only", "", *common])
    rows["flag: --only attack=gausian_noise"] = in_process(["bench", good, "--only", "attack=gausian_noise", "--plan"])
    rows["flag: --version"] = in_process(["--version"])

    (tmp / "afile").write_text("x")
    rows["store: --store is a file (bench)"] = in_process(["bench", good, "--store", tmp / "afile", "--artifacts", art])
    rows["store: --store is a file (verify)"] = in_process(["verify", "--store", tmp / "afile"])
    if args.ro_mount:
        rows["store: read-only, a cell missing"] = in_process(["bench", good, "--store", args.ro_mount,
                                                               "--artifacts", art], stub_run=False)
    s = ResultStore(tmp / "st")
    rec = s.put({"stage": "train", "version": "1", "params": {"seed": 0}, "upstream": {}}, {"test_acc": 0.5})
    (tmp / "st" / ".failures").mkdir()
    (tmp / "st" / ".failures" / ("0" * 64 + ".json")).write_text("")
    rows["store: 0-byte failure file (ls)"] = in_process(["ls", "--store", tmp / "st"])
    rows["store: 0-byte failure file (gc)"] = in_process(["gc", "--store", tmp / "st"])
    src = ResultStore(tmp / "src")
    src.put({"stage": "train", "version": "1", "params": {"seed": 0}, "upstream": {}}, {"test_acc": 0.5})
    s.path("train", rec.key).write_text("{broken")
    rows["store: merge into a store with a corrupt file"] = in_process(["merge", tmp / "src", "--store", tmp / "st"])
    s.path("train", rec.key).write_text("[" * 100_000 + "]" * 100_000)
    rows["store: deeply nested result (verify)"] = in_process(["verify", "--store", tmp / "st"])
    (tmp / "artfile").write_text("x")
    rows["artifacts: --artifacts is a file"] = in_process(["bench", good, "--store", tmp / "s2", "--artifacts",
                                                           tmp / "artfile"], stub_run=False)
    rows["report: mistyped --store"] = in_process(["report", good, "--store", tmp / "nope"])
    (tmp / "empty").mkdir()
    rows["report: empty store"] = in_process(["report", good, "--store", tmp / "empty"])
    rows["check: --reports /nonexistent"] = in_process(["bench", good, "--check", "--store", tmp / "st",
                                                        "--reports", "/nonexistent"])
    Path(args.out).write_text(json.dumps(rows, indent=1))
    for k, v in rows.items():
        print(f"{k:<45} {v['outcome']:<28} {v['detail']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ro-mount")
    main_(ap.parse_args())
