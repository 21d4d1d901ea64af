"""Issue 24's hostile-input corpus: bad suites (tests/hostile/*.yaml), bad data files (generated here), store
and artifact faults, bad flags. Every attempt must end in one clear line and the documented exit status, with
nothing written; none may train a network."""
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from naspoison.cli import build_parser, main
from naspoison.store import ResultStore

HOSTILE = Path(__file__).parent / "hostile"


def run(capsys, *argv):
    """main() in-process: (exit status, stdout, stderr); an escaping exception is a test failure (a traceback)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_clear_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert lines and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- suites
SUITES = [  # (file in tests/hostile, text the one-line error must contain)
    ("alias_bomb.yaml", "expands to more than"),
    ("recursive_alias.yaml", "expands to more than"),
    ("huge_grid.yaml", "less than or equal to 1000"),
    ("inf_lr.yaml", "not a finite number"),
    ("nan_budget.yaml", "not a finite number"),
    ("version2.yaml", "suite version 2 is not known"),
    ("unknown_top_key.yaml", "did you mean 'families'"),
    ("python_tag.yaml", "is not allowed"),
    ("not_a_mapping.yaml", "must be a mapping"),
]


@pytest.mark.parametrize("name,expected", SUITES)
def test_hostile_suite_is_one_clear_line_and_exit_2(tmp_path, capsys, name, expected):
    t0 = time.perf_counter()
    rc, out, err = run(capsys, "bench", HOSTILE / name, "--plan", "--store", tmp_path / "store")
    assert rc == 2 and expected in one_clear_line(err), err
    assert not (tmp_path / "store").exists()
    assert time.perf_counter() - t0 < 30  # bounded: no expansion to gigabytes, no endless grid


def test_binary_garbage_suite(tmp_path, capsys):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    rc, _, err = run(capsys, "bench", path, "--plan", "--store", tmp_path / "store")
    assert rc == 2 and "not a UTF-8 text file" in one_clear_line(err)
    path.write_bytes(b"version: 1\x00\x01\x02")
    rc, _, err = run(capsys, "bench", path, "--plan", "--store", tmp_path / "store")
    assert rc == 2 and "NUL" in one_clear_line(err)


# ----------------------------------------------------------------------------- data files
def _arrays(n=20, classes=3):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
    y = np.arange(n) % classes
    return {"x_train": x[: n // 2], "y_train": y[: n // 2], "x_test": x[n // 2:], "y_test": y[n // 2:]}


def _with(**changes):
    a = _arrays()
    a.update(changes)
    return {k: v for k, v in a.items() if v is not None}


NPZ = {  # name -> (arrays to save, or raw bytes; text the error must contain)
    "missing file": (None, "does not exist"),
    "not a zip": (b"this is not an npz", "not a readable .npz"),
    "truncated zip": ("truncate", "not a readable .npz"),
    "lacks y_test": (_with(y_test=None), "lacks ['y_test']"),
    "float images": (_with(x_train=np.zeros((10, 6, 6), np.float32)), "must be uint8"),
    "5-d images": (_with(x_train=np.zeros((10, 6, 6, 1, 1), np.uint8)), "must be uint8"),
    "two channels": (_with(x_train=np.zeros((10, 6, 6, 2), np.uint8)), "C 1 or 3"),
    "image shapes differ": (_with(x_test=np.zeros((10, 7, 7, 1), np.uint8)), "differ in shape"),
    "mismatched lengths": (_with(y_train=np.arange(9) % 3), "has 9 labels for 10 images"),
    "empty test set": (_with(x_test=np.zeros((0, 6, 6, 1), np.uint8), y_test=np.zeros(0, np.int64)), "y_test is empty"),
    "one class": (_with(y_train=np.zeros(10, np.int64), y_test=np.zeros(10, np.int64)), "single class"),
    "test label beyond the train classes": (_with(y_test=np.full(10, 5)), "beyond the training classes"),
    "negative label": (_with(y_train=np.arange(10) % 3 - 1), "negative label"),
    "float labels": (_with(y_train=(np.arange(10) % 3) + 0.7), "integer class ids"),
    "2-d labels": (_with(y_train=np.zeros((10, 1), np.int64)), "integer class ids"),
    "pickled objects": (_with(y_train=np.array([{"os": "system"}] * 10, dtype=object)), "pickled Python objects"),
}


@pytest.mark.parametrize("case", sorted(NPZ))
def test_bad_npz_is_caught_at_validation(tmp_path, capsys, case):
    """Before: caught per cell at run time, or not at all (float labels truncated, a test label beyond the
    training classes trained silently). Now: --plan (no cell runs) already says what is wrong and where."""
    arrays, expected = NPZ[case]
    shutil.copy(HOSTILE / "base.yaml", tmp_path / "suite.yaml")
    data = tmp_path / "data.npz"
    if isinstance(arrays, bytes):
        data.write_bytes(arrays)
    elif arrays == "truncate":
        np.savez(data, **_arrays())
        data.write_bytes(data.read_bytes()[:300])
    elif arrays is not None:
        np.savez(data, **arrays)
    rc, _, err = run(capsys, "bench", tmp_path / "suite.yaml", "--plan", "--store", tmp_path / "store")
    line = one_clear_line(err)
    assert rc == 2 and expected in line and "profiles.demo.dataset.path" in line, err
    assert not (tmp_path / "store").exists()


def test_a_good_npz_next_to_the_suite_plans_from_any_directory(tmp_path, capsys, monkeypatch):
    shutil.copy(HOSTILE / "base.yaml", tmp_path / "suite.yaml")
    np.savez(tmp_path / "data.npz", **_arrays())
    monkeypatch.chdir("/")
    rc, out, err = run(capsys, "bench", tmp_path / "suite.yaml", "--plan", "--store", tmp_path / "store")
    assert rc == 0 and "plan" in out, err


# ----------------------------------------------------------------------------- flags


@pytest.fixture
def good(tmp_path):
    text = (HOSTILE / "base.yaml").read_text().replace("{name: npz, path: data.npz}", "{name: digits, train_size: 50}")
    (tmp_path / "suite.yaml").write_text(text)
    return tmp_path / "suite.yaml"


@pytest.mark.parametrize("flags,expected", [
    (["--workers", "0"], "not at least 1"),
    (["--workers", "-5"], "not at least 1"),
    (["--tasks", "0"], "not at least 1"),
])
def test_bad_counts_are_usage_errors(good, capsys, flags, expected):
    rc, _, err = run(capsys, "bench", good, *flags)
    assert rc == 2 and expected in err


@pytest.mark.parametrize("devices,expected", [(",", "names no device"), ("gpu0", "is not cpu or cuda:N"),
                                              ("cuda:x", "is not cpu or cuda:N")])
def test_bad_devices_are_rejected_before_running(good, tmp_path, capsys, devices, expected):
    rc, _, err = run(capsys, "bench", good, "--devices", devices, "--store", tmp_path / "store",
                     "--artifacts", tmp_path / "art")
    assert rc == 2 and expected in one_clear_line(err)
    assert not (tmp_path / "store").exists()


def test_a_gpu_this_machine_lacks_is_rejected_before_running(good, tmp_path, capsys):
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"
    rc, _, err = run(capsys, "bench", good, "--devices", missing, "--store", tmp_path / "store",
                     "--artifacts", tmp_path / "art")
    assert rc == 2 and "usable CUDA device" in one_clear_line(err)


def test_empty_only_is_rejected_and_no_match_names_the_nearest_values(good, capsys):
    rc, _, err = run(capsys, "bench", good, "--only", "", "--plan")
    assert rc == 2 and "--only is empty" in err
    rc, _, err = run(capsys, "bench", good, "--only", "attack=gausian_noise", "--plan")
    assert rc == 2 and "nearest: gaussian_noise" in err
    rc, _, err = run(capsys, "bench", good, "--only", "budget=0.10", "--plan")
    assert rc == 2 and "budget values: 0.1, 0.5" in err


def test_every_option_has_help_and_the_exit_codes_are_documented(capsys):
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name, sub in subs.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"naspoison {name}: {action.option_strings or action.dest} has no help text"
        assert "exit status" in sub.format_help()
    assert "141" in parser.format_help()
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("naspoison ")


# ----------------------------------------------------------------------------- stores
def test_store_that_is_a_file(good, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for argv in (["bench", good, "--store", tmp_path / "afile"], ["verify", "--store", tmp_path / "afile"],
                 ["ls", "--store", tmp_path / "afile"], ["merge", tmp_path, "--store", tmp_path / "afile"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and "is a file, not a folder" in one_clear_line(err), argv


def test_read_only_store_with_a_missing_cell_is_refused_up_front(good, tmp_path, capsys, monkeypatch):
    import tempfile

    (tmp_path / "store").mkdir()

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    rc, _, err = run(capsys, "bench", good, "--store", tmp_path / "store", "--artifacts", tmp_path / "art")
    assert rc == 2 and "is not writable (Read-only file system)" in one_clear_line(err)


def test_missing_or_empty_store_is_an_error_for_readers(good, tmp_path, capsys):
    rc, _, err = run(capsys, "report", good, "--store", tmp_path / "nope")
    assert rc == 2 and "does not exist" in one_clear_line(err)
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "report", good, "--store", tmp_path / "empty")
    assert rc == 1 and "holds no result" in err
    rc, out, _ = run(capsys, "verify", "--store", tmp_path / "empty")
    assert rc == 1 and "holds no results" in out


def _store_with_one_record(root):
    store = ResultStore(root)
    return store, store.put({"stage": "train", "version": "1", "params": {"seed": 0}, "upstream": {}}, {"test_acc": 0.5})


def test_full_disk_leaves_no_failure_file_and_damaged_ones_do_not_break_ls_or_gc(tmp_path, capsys, monkeypatch):
    store, _ = _store_with_one_record(tmp_path / "store")
    real = Path.write_text

    def full(self, *a, **kw):
        if ".failures" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", full)
    assert store.record_failure({"stage": "search", "params": {}}, RuntimeError("x")) is None
    monkeypatch.undo()
    assert not list((tmp_path / "store" / ".failures").glob("*"))
    (tmp_path / "store" / ".failures" / ("0" * 64 + ".json")).write_text("")  # what a full disk left before
    rc, out, err = run(capsys, "ls", "--store", tmp_path / "store")
    assert rc == 0 and "1 unreadable" in out, err
    rc, out, err = run(capsys, "gc", "--store", tmp_path / "store")
    assert rc == 0 and "removed unreadable failure file" in out, err
    assert not list((tmp_path / "store" / ".failures").glob("*"))


def test_deeply_nested_result_file_is_corrupt_not_a_crash(good, tmp_path, capsys):
    store, rec = _store_with_one_record(tmp_path / "store")
    store.path("train", rec.key).write_text("[" * 100_000 + "]" * 100_000)
    rc, out, err = run(capsys, "verify", "--store", tmp_path / "store")
    assert rc == 1 and "nested too deeply" in out and "Traceback" not in err
    rc, out, err = run(capsys, "ls", "-l", "--store", tmp_path / "store")
    assert rc == 0 and "CORRUPT" in out


def test_merge_into_a_store_with_a_corrupt_file(tmp_path, capsys):
    _, rec = _store_with_one_record(tmp_path / "src")
    dest, _ = _store_with_one_record(tmp_path / "dest")
    dest.path("train", rec.key).write_text("{broken")
    rc, out, err = run(capsys, "merge", tmp_path / "src", "--store", tmp_path / "dest")
    assert rc == 1 and "ours is corrupt, not replaced" in out and "Traceback" not in err
    assert dest.path("train", rec.key).read_text() == "{broken"  # never overwritten: the user decides


def test_artifact_cache_that_cannot_be_opened(good, tmp_path, capsys):
    (tmp_path / "art").write_text("a file where the cache should be")
    rc, _, err = run(capsys, "bench", good, "--store", tmp_path / "store", "--artifacts", tmp_path / "art")
    assert rc == 1 and "artifact cache" in one_clear_line(err) and "cannot be opened" in err


def test_artifact_cache_on_a_full_disk_is_one_clear_error(tmp_path):
    import sqlite3

    from naspoison.store import ArtifactCache
    from naspoison.store.artifacts import ArtifactError

    art = ArtifactCache(tmp_path / "art")

    def full(*a, **kw):
        raise sqlite3.OperationalError("database or disk is full")

    art._cache.set = full
    with pytest.raises(ArtifactError, match="cannot write poison-x .*disk is full.*free space"):
        art.put("poison-x", b"bytes")


# ----------------------------------------------------------------------------- bench and check
def test_failing_bench_keeps_the_report_and_says_computed_nothing(good, tmp_path, capsys, monkeypatch):
    from naspoison.run import executor

    reports = tmp_path / "reports"
    (reports / "demo").mkdir(parents=True)
    (reports / "demo" / "report.json").write_text('{"complete": true}')

    def every_cell_fails(trials, store, artifacts, devices, emit, poll=0.5):
        return executor.RunSummary(failed=[f"{t.label}: boom" for t in trials])

    monkeypatch.setattr(executor, "run_parallel", every_cell_fails)
    rc, out, _ = run(capsys, "bench", good, "--store", tmp_path / "store", "--artifacts", tmp_path / "art",
                     "--reports", reports)
    out = " ".join(out.split())  # the console wraps long lines
    assert rc == 1 and "computed nothing in" in out and "all cached" not in out
    assert "not written" in out and (reports / "demo" / "report.json").read_text() == '{"complete": true}'


def test_check_against_missing_reports_fails(good, tmp_path, capsys):
    _store_with_one_record(tmp_path / "store")
    rc, out, _ = run(capsys, "bench", good, "--check", "--store", tmp_path / "store", "--reports", "/nonexistent")
    assert rc == 1 and "reports folder /nonexistent does not exist" in out and "report matches" not in out
    rc, out, _ = run(capsys, "bench", good, "--check", "--only", "seed=0", "--store", tmp_path / "store",
                     "--reports", "/nonexistent")
    assert rc == 1 and "report matches" not in out


def test_a_closed_output_pipe_stops_the_run_without_a_failure_record(good, tmp_path):
    """Before: `bench | head` printed a BrokenPipe traceback and recorded the running cell as failed."""
    from naspoison.run import executor
    from naspoison.store import ArtifactCache
    from naspoison.suite import Suite
    from naspoison.suite.expand import expand

    trial = expand(Suite(good), "demo").trials[0]
    store, art = ResultStore(tmp_path / "store"), ArtifactCache(tmp_path / "art")

    def closed_pipe(event):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        executor.attempt(trial, store, art, "cpu", closed_pipe, executor.RunSummary())
    assert store.failures() == []


def test_bench_piped_into_head_exits_quietly(tmp_path):
    """The CLI end to end: a reader that closes the pipe gets no traceback (exit 141)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = ("import sys; from naspoison.cli import main\n"
            "class Closed:\n"
            "    def write(self, s): raise BrokenPipeError(32, 'Broken pipe')\n"
            "    def flush(self): pass\n"
            "    def fileno(self): return sys.__stdout__.fileno()\n"
            "    def isatty(self): return False\n"
            "sys.stdout = Closed()\n"
            f"sys.exit(main(['ls', '--store', {str(tmp_path)!r}]))\n")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 141 and "Traceback" not in p.stderr, p.stderr


# ----------------------------------------------------------------------------- workers die with their parent
def test_workers_die_with_their_parent_after_kill_9(tmp_path):
    """Before: kill -9 of a --workers 2 parent left workers that finished the whole run, and a manager that
    never exited. The same initializer run_parallel gives its pool and manager, without training anything."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    pids = tmp_path / "pids"
    code = ("import multiprocessing as mp, os, time, sys\n"
            "from naspoison.run.executor import die_with_parent\n"
            "def work(path):\n"
            "    open(path, 'a').write(f'{os.getpid()}\\n'); time.sleep(600)\n"
            "if __name__ == '__main__':\n"
            "    ctx = mp.get_context('spawn')\n"
            "    pool = ctx.Pool(2, initializer=die_with_parent, initargs=(os.getpid(),))\n"
            f"    pool.map_async(work, [{str(pids)!r}] * 2)\n"
            "    time.sleep(600)\n")
    (tmp_path / "parent.py").write_text(code)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.2)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2
    parent.kill()  # SIGKILL: the parent runs no cleanup
    parent.wait()
    deadline = time.time() + 10
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if _alive(p)]
    assert not alive, f"orphaned workers {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------- terminal
def test_progress_shows_eta_and_a_started_cell_before_its_first_log_line():
    from rich.console import Console

    from naspoison.cli import _Progress

    con = Console(force_terminal=True, width=120, file=open(os.devnull, "w"))
    with _Progress(con, "demo") as progress:
        progress.emit({"kind": "begin", "trials": 3, "devices": ["cpu"], "store": "cache", "artifacts": "a"})
        progress.emit({"kind": "start", "stage": "search", "label": "poisoning/none/pdarts/seed=0"})
        task = progress.progress.tasks[0]
        assert "search poisoning/none/pdarts/seed=0: started" in task.description
        assert any(type(c).__name__ == "TimeRemainingColumn" for c in progress.progress.columns)


def test_report_at_80_columns_is_compact_and_never_truncates_names():
    from rich.console import Console

    from naspoison.report.assemble import print_console

    report = json.loads((Path(__file__).resolve().parents[1] / "reports" / "demo" / "report.json").read_text())
    con = Console(width=80, record=True, file=open(os.devnull, "w"))
    print_console(con, report)
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Confidence-based label-flipping" in text and "…" not in text.split("Random-sampling baseline")[0]
