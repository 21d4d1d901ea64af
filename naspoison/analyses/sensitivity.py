"""Metric sensitivity (the poisoning paper's Table 2): the training-free metrics of the same random
architectures, at the same initialisation, on the same sample indices of the clean and of a poisoned
training set; the percentage change isolates what the data did.

Choices, stated once:
* Architectures: ``archs`` genotypes drawn uniformly from the DARTS space (seeded). Each metric is
  measured the way its algorithm measures it: κ_NTK and linear regions with TE-NAS's probe networks
  (the thin supernet masked to the genotype; the NTK on ``tenas.batch_size`` images, the regions on
  small single-channel crops, mean over ``tenas.repeats``), RoBoT's metrics on RoBoT's metric network
  (``robot_channels`` wide, ``robot_layers`` cells) in batches of ``robot_batch_size``, averaged.
  Every network is initialised from the architecture's own seed, identical for every dataset variant,
  and the probes draw their images and crops from a seeded generator, identical too.
* Samples: ``samples`` training indices drawn once (seeded, independent of the attack); every batch,
  NTK batch and crop comes from them. A poisoned set has the same indices, so at p = 50 % about half
  of them are poisoned, as in the paper. Each variant is normalised with its own channel statistics,
  as a search on it would be.
* Metrics: the paper's Table 2 columns (TE-NAS's ntk_cond and linear_regions; RoBoT's grad_norm,
  snip, grasp, fisher) plus jacob_cov, which RoBoT also uses and which reads data. ``fisher`` is the
  per-channel definition the paper names; RoBoT's own weighting (``fisher_fanin``) can be listed in
  ``metrics`` instead. synflow is left
  out by default (it reads no data, so its change is zero by construction: the paper's footnote 3).
  A label-free metric (ntk_cond, linear_regions, jacob_cov) cannot move under a label-flip attack:
  its change there is exactly 0.
* Change: 100 · (v_poisoned − v_clean) / |v_clean| per architecture, then mean ± std (ddof = 1)
  over the architectures where both values are finite and v_clean ≠ 0 (the rest are counted).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from pydantic import Field, field_validator

from naspoison.data.augment import channel_stats
from naspoison.data.datasets import ImageData
from naspoison.nas.metrics import METRICS, compute_metrics
from naspoison.nas.tenas import Probe, TENASParams, alive_of
from naspoison.params import StrictParams
from naspoison.spaces.darts import sample_genotype
from naspoison._lazy import lazy

torch = lazy("torch", globals())

TENAS_METRICS = ("ntk_cond", "linear_regions")  # in the order Probe.measure returns them
TABLE_METRICS = ["ntk_cond", "linear_regions", "grad_norm", "snip", "grasp", "fisher", "jacob_cov"]


class SensitivityParams(StrictParams):
    """Defaults: the paper's 100 architectures and 1000 samples; TE-NAS's and RoBoT's metric settings."""
    archs: int = Field(100, gt=0)
    samples: int = Field(1000, gt=1)
    metrics: list[str] = Field(default_factory=lambda: list(TABLE_METRICS), min_length=1)
    tenas: TENASParams = Field(default_factory=TENASParams, description="TE-NAS's probes (its search fields unused)")
    robot_batch_size: int = Field(64, gt=1)
    robot_channels: int = Field(16, gt=0)
    robot_layers: int = Field(5, ge=3)  # RoBoT's metric network (its search.py: --layers 5)
    seed: int = 0

    @field_validator("metrics")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        return v


def sample_indices(n_train: int, p: SensitivityParams) -> np.ndarray:
    rng = np.random.default_rng([p.seed, 0x5E45])
    return np.sort(rng.choice(n_train, size=min(p.samples, n_train), replace=False))


def metric_values(data: ImageData, p: SensitivityParams, device="cpu",
                  log: Callable[[str], None] | None = None) -> dict:
    """Every metric of every architecture on this (clean or poisoned) training set's samples."""
    log = log or (lambda m: None)
    device = torch.device(device)
    rng = np.random.default_rng([p.seed, 0xA2C5])
    genotypes = [sample_genotype(rng) for _ in range(p.archs)]
    seeds = rng.integers(2**62, size=(p.archs, 2))  # per architecture: its init seed, its probe-input seed
    stats = channel_stats(data.x_train)
    idx = sample_indices(len(data.y_train), p)
    sub = replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])
    x = torch.from_numpy(((sub.x_train / 255.0 - stats[0]) / stats[1]).transpose(0, 3, 1, 2).astype(np.float32)).to(device)
    y = torch.from_numpy(sub.y_train).to(device)
    batches = [slice(i, i + p.robot_batch_size) for i in range(0, len(idx), p.robot_batch_size)
               if min(i + p.robot_batch_size, len(idx)) - i > 1]  # a 1-sample batch has no BN statistics
    tenas_names = [m for m in p.metrics if m in TENAS_METRICS]
    robot_names = [m for m in p.metrics if m not in TENAS_METRICS]
    h, _, c = data.shape
    values = np.empty((p.archs, len(p.metrics)))
    t0 = time.perf_counter()
    for a, g in enumerate(genotypes):
        got: dict[str, float] = {}
        if tenas_names:
            torch.manual_seed(int(seeds[a, 0]))  # the same initial weights on every dataset variant
            probe = Probe(sub, p.tenas, np.random.default_rng(int(seeds[a, 1])), device, stats)
            measured = []
            for _ in range(p.tenas.repeats):
                probe.new_repeat()
                measured.append(probe.measure(alive_of(g)))
            got.update(zip(TENAS_METRICS, np.mean(measured, axis=0)))
        if robot_names:
            torch.manual_seed(int(seeds[a, 0]))
            from naspoison.spaces.darts_net import EvalNetwork, Logits

            net = Logits(EvalNetwork(g, p.robot_channels, p.robot_layers, data.num_classes, in_channels=c,
                                     auxiliary=False, image_size=h)).to(device)
            per_batch = [compute_metrics(net, x[b], y[b], robot_names) for b in batches]
            got.update({m: float(np.mean([r[m] for r in per_batch])) for m in robot_names})
        values[a] = [got[m] for m in p.metrics]
        if (a + 1) % max(1, p.archs // 10) == 0:
            log(f"metrics: {a + 1}/{p.archs} architectures ({time.perf_counter() - t0:.0f}s)")
    return {"metrics": list(p.metrics), "values": [[_finite_or_none(v) for v in row] for row in values],
            "genotypes": [g.to_dict() for g in genotypes], "samples": len(idx), "robot_batches": len(batches),
            "seconds": time.perf_counter() - t0}


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def percent_change(clean: list[float | None], poisoned: list[float | None]) -> dict:
    """mean ± std over architectures of 100·(poisoned − clean)/|clean|, and how many were usable."""
    pairs = [(c, q) for c, q in zip(clean, poisoned) if c is not None and q is not None and c != 0]
    change = np.array([100.0 * (q - c) / abs(c) for c, q in pairs])
    return {"mean": float(change.mean()) if len(change) else None,
            "std": float(change.std(ddof=1)) if len(change) > 1 else None,
            "n": len(change), "excluded": len(clean) - len(change)}


def sensitivity_table(clean: dict, attacked: list[dict]) -> dict:
    """``clean``: the clean cell's result; ``attacked``: {attack, budget, result} per poisoned cell.
    Rows per attack, a column per metric, in the layout of the paper's Table 2."""
    metrics = clean["metrics"]
    rows = []
    for a in attacked:
        r = a["result"]
        if r["metrics"] != metrics or len(r["values"]) != len(clean["values"]):
            raise ValueError(f"{a['attack']}: computed with other metrics or architectures than the clean cell")
        rows.append({"attack": a["attack"], "budget": a["budget"],
                     "change": {m: percent_change([v[j] for v in clean["values"]], [v[j] for v in r["values"]])
                                for j, m in enumerate(metrics)}})
    return {"metrics": metrics, "archs": len(clean["values"]), "samples": clean["samples"], "rows": rows}
