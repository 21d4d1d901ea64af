import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

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


def naspoison(cwd, *args, wait=True, **kw):
    env = {**os.environ, "NASPOISON_ARTIFACTS": str(Path(cwd) / "artifacts"), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "naspoison.cli", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="session")
def digits_small():
    """300 training and 120 test images of scikit-learn's digits (8x8, 1 channel)."""
    from naspoison.data.datasets import load_dataset

    return load_dataset({"name": "digits", "train_size": 300, "test_size": 120})
