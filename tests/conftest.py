import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Every test computes at one intra-op thread, as every cell does (``--cell-threads`` default 1): CPU float
    sums depend on the thread count, so a test's numbers must not depend on the CI machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

TINY_SUITE = """\
version: 1
families:
  poisoning:
    attacks: [none, gaussian_noise, random_label_flip]
    budgets: [0.1, 0.5]
    algorithms: [random]
  random_baseline: {{}}
profiles:
  tiny:
    seeds: {seeds}
    dataset: {{name: digits, train_size: 300, test_size: 120}}
    train: {{epochs: {epochs}, batch_size: 64, init_channels: 4, layers: 3, crop_padding: 1, flip: false, cutout: 2,
             auxiliary_weight: 0.4}}
"""


@pytest.fixture
def tiny(tmp_path):
    """A tiny suite in its own folder, with its own store, artifact cache and reports."""

    def make(seeds=3, epochs=2):
        (tmp_path / "suite.yaml").write_text(TINY_SUITE.format(seeds=seeds, epochs=epochs))
        return tmp_path

    return make


def _one_worker(args: tuple) -> tuple:
    # bench defaults to one CPU worker per usable core; the tests pin one (a worker count of their own where
    # they test workers), so that their cells run in this process and in the order they expect
    if args and args[0] == "bench" and not {"--workers", "--devices", "--executor"} & set(args):
        return (*args, "--workers", "1")
    return args


def naspoison(cwd, *args, wait=True, **kw):
    """``naspoison ARGS`` in ``cwd`` with its own artifact cache, in this process (``cli.main``: no second
    torch import); returns (returncode, stdout, stderr) like ``subprocess.run``. ``wait=False`` starts a real
    process (``Popen``), for the tests that kill one or run two at once."""
    args = _one_worker(args)
    if not wait:
        env = {**os.environ, "NASPOISON_ARTIFACTS": str(Path(cwd) / "artifacts"), "PYTHONPATH": str(REPO),
               "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "naspoison.cli", *args]
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return run_in_process(cwd, *args)


def run_in_process(cwd, *args) -> subprocess.CompletedProcess:
    import contextlib
    import io

    import torch

    from naspoison.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env, threads = os.getcwd(), dict(os.environ), torch.get_num_threads()
    os.environ["NASPOISON_ARTIFACTS"] = str(Path(cwd) / "artifacts")
    torch.set_num_threads(1)  # what OMP_NUM_THREADS=1 gave the subprocess: float sums depend on the thread count
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse: --help, bad arguments
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["naspoison", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def digits_small():
    """300 training and 120 test images of scikit-learn's digits (8x8, 1 channel)."""
    from naspoison.data.datasets import load_dataset

    return load_dataset({"name": "digits", "train_size": 300, "test_size": 120})
