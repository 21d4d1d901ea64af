"""The pipeline's stages (SPEC §3): how each cell's spec is built and how it is computed.

A spec is ``{stage, version, params, upstream}``; its sha256 is the cell's key. ``version`` is
bumped when a stage's semantics change, so old results stop matching instead of being reused.
Machine-specific settings (dataset root, download flag) are not part of any key.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from functools import lru_cache

import numpy as np

from naspoison.attacks import ATTACKS, Poison
from naspoison.data.datasets import ImageData, load_dataset
from naspoison.nas import ALGORITHMS
from naspoison.spaces.darts import Genotype
from naspoison.store import ArtifactCache, ResultStore, content_key

VERSIONS = {"poison": "1", "search": "1", "train": "1"}
SPACE = "darts"


def dataset_identity(dataset: dict) -> dict:
    """The part of a dataset spec that decides the data (not where it lives on this machine)."""
    keep = ("name", "train_size", "test_size", "subset_seed") + (("path",) if dataset["name"] == "npz" else ())
    return {k: dataset[k] for k in keep}


def _spec(stage: str, params: dict, upstream: dict) -> dict:
    return {"stage": stage, "version": VERSIONS[stage], "params": params, "upstream": upstream}


def poison_spec(dataset: dict, attack: str, budget: float, attack_params: dict, seed: int) -> dict:
    return _spec("poison", {"dataset": dataset_identity(dataset), "attack": attack, "budget": float(budget),
                            "attack_params": attack_params, "seed": seed}, {})


def search_spec(algorithm: str, params: dict, dataset: dict, seed: int, poison: dict | None) -> dict:
    return _spec("search", {"algorithm": algorithm, "algorithm_params": params, "space": SPACE,
                            "dataset": dataset_identity(dataset), "seed": seed},
                 {"poison": content_key(poison) if poison else None})


def train_spec(genotype: dict, recipe: dict, dataset: dict, seed: int) -> dict:
    return _spec("train", {"genotype": Genotype.from_dict(genotype).to_dict(), "recipe": recipe,
                           "dataset": dataset_identity(dataset), "seed": seed}, {})


# ----------------------------------------------------------------------------- computing
def make_poison(spec: dict, dataset: dict) -> Poison:
    p = spec["params"]
    attack = ATTACKS[p["attack"]]()
    data = load_dataset(dataset)
    rng = np.random.default_rng([p["seed"], 0x9015])
    return attack.poison(data, p["budget"], attack.Params.model_validate(p["attack_params"]), rng)


def poisoned_data(poison: dict | None, dataset: dict, artifacts: ArtifactCache) -> ImageData:
    """The (possibly poisoned) training set a search sees; recomputed if the artifact was evicted."""
    clean = load_dataset(dataset)
    if poison is None:
        return clean
    key = content_key(poison)
    blob = artifacts.get(key)
    if blob is None:
        p = make_poison(poison, dataset)
        artifacts.put(key, p.to_bytes())
    else:
        p = Poison.from_bytes(blob)
    return p.apply(clean)


def compute_poison(spec: dict, dataset: dict, artifacts: ArtifactCache, device: str) -> dict:
    p = make_poison(spec, dataset)
    artifacts.put(content_key(spec), p.to_bytes())
    return {"artifact": content_key(spec), **p.summary}


def compute_search(spec: dict, poison: dict | None, dataset: dict, artifacts: ArtifactCache, device: str,
                   log=None) -> dict:
    """The search on the (possibly poisoned) training set; ``log(message)`` receives its progress."""
    p = spec["params"]
    alg = ALGORITHMS[p["algorithm"]]()
    data = poisoned_data(poison, dataset, artifacts)
    out = alg.search(data, alg.Params.model_validate(p["algorithm_params"]), p["seed"], device=device, log=log)
    Genotype.from_dict(out["genotype"])  # an algorithm must return a valid genotype
    return out


def compute_train(spec: dict, dataset: dict, device: str) -> dict:
    from naspoison.train import Recipe, train_genotype

    p = spec["params"]
    return train_genotype(Genotype.from_dict(p["genotype"]), load_dataset(dataset),
                          Recipe.model_validate(p["recipe"]), p["seed"], device=device)


# ----------------------------------------------------------------------------- provenance
@lru_cache(maxsize=1)
def _static_provenance() -> dict:
    import torch

    import naspoison

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(__file__)).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"git_revision": rev, "naspoison": naspoison.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "host": socket.gethostname()}


def provenance(device: str, start: float, end: float) -> dict:
    return {**_static_provenance(), "device": device, "start": start, "end": end,
            "wall_seconds": round(end - start, 3), "pid": os.getpid()}


def run_stage(store: ResultStore, spec: dict, compute, device: str) -> dict:
    """Compute a cell on ``device`` and store it with its provenance; returns the stored result."""
    start = time.time()
    result = compute(device)
    return store.put(spec, result, provenance(device, start, time.time())).result
