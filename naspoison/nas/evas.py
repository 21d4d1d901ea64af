"""Evas search (Evas §3.4, Algorithm 1): aging evolution over the 15,625 NB201 cells, minimising the
trigger-NTK score of ``naspoison.backdoor.score`` — no training of the model or the generator.

A pool of ``pool_size`` cells drawn uniformly; each step samples ``sample_size`` pool members
(without replacement), mutates the one with the lowest score — one edge chosen uniformly gets a
*different* op, drawn with weights none 1, skip 2, conv1x1 3, conv3x3 3, avgpool 1 renormalised over
the other four — and the child replaces the oldest member. ``steps`` children in all. The result is
the lowest score seen in the whole history (ties: the first seen).

Everything random follows from the seed: the pool and mutations (numpy), the score batch (a fixed
draw of ``batch_size`` training images) and the ``inits`` (model, generator) initialisation seeds,
which are the same for every architecture. Scores are cached by (arch, init seeds, score setting,
data): in memory for the search and in the artifact cache across searches and the score study,
so a revisited cell costs nothing.

Named variants that reproduce Evas's own code (``search_genetic.py``; docs/fidelity/evas_score.md and
evas_evolution.md): ``regime: reference`` (how a cell is scored, ``backdoor.score``) and
``evolution: reference`` (``reference_evolution``). The defaults follow the paper.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from naspoison.backdoor.variants import VARIANTS
from naspoison.backdoor.score import trigger_ntk_cond
from naspoison.data.augment import channel_stats
from naspoison.data.datasets import ImageData
from naspoison.nas.base import NASAlgorithm
from naspoison.params import StrictParams
from naspoison.spaces import nb201
from naspoison.store import content_key
from naspoison.train import seed_everything
from naspoison._lazy import lazy

torch = lazy("torch", globals())
generator_net = lazy("naspoison.backdoor.generator", globals(), "generator_net")  # a torch module: loaded at first use

SCORE_VERSION = "2"  # 2: the vinai mask fix (issue 19) and the score regime field
MUTATION_WEIGHTS = {"none": 1, "skip_connect": 2, "nor_conv_1x1": 3, "nor_conv_3x3": 3, "avg_pool_3x3": 1}


class ScoreSetting(StrictParams):
    """How one architecture is scored (Evas: batch 96, median of 3 inits, the NB201 network at C = 16)."""
    batch_size: int = Field(96, gt=1)
    inits: int = Field(3, gt=0)
    channels: int = Field(16, gt=0, description="NB201 C")
    cells_per_stage: int = Field(5, gt=0)
    generator_channels: int = Field(32, gt=0)
    variant: str = "trojanzoo"
    # ours: generator in train mode, model in eval mode (per-sample Θ); reference: Evas's search_genetic.py
    # (generator in eval mode with reset running statistics, model in train mode, whole-batch Jacobian)
    regime: Literal["ours", "reference"] = "ours"
    chunk: int = Field(8, gt=0, description="samples per vmapped Jacobian (memory, not results)")


class EvasParams(ScoreSetting):
    pool_size: int = Field(50, gt=1)
    sample_size: int = Field(10, gt=0)
    steps: int = Field(4000, ge=0)
    # paper: Algorithm 1 (parent = the best of the sample; initial pool from the whole space); reference:
    # search_genetic.py (the parent is pool[position of the best within the sample], the oldest slot by
    # age counters is replaced, the initial pool from the first ``reference_pool_range`` indices)
    evolution: Literal["paper", "reference"] = "paper"
    reference_pool_range: int = Field(10000, gt=1, le=nb201.N_ARCHS)


class Scorer:
    """Scores NB201 cells on one fixed batch with fixed init seeds; memoised and artifact-cached."""

    def __init__(self, data: ImageData, setting: ScoreSetting, seed: int, dataset_identity: dict | None = None,
                 artifacts=None, device: str = "cpu"):
        if setting.variant not in VARIANTS:
            raise ValueError(f"unknown trigger variant {setting.variant!r}; known: {', '.join(VARIANTS)}")
        self.setting, self.artifacts, self.device = setting, artifacts, torch.device(device)
        self.data = data
        rng = np.random.default_rng([seed, 0xE7A5])
        n = len(data.x_train)
        if setting.batch_size > n:
            raise ValueError(f"score batch {setting.batch_size} is larger than the training set ({n})")
        self.batch_indices = np.sort(rng.choice(n, setting.batch_size, replace=False))
        self.init_seeds = [int(s) for s in rng.integers(0, 2**31 - 1, setting.inits)]
        x = torch.from_numpy(data.x_train[self.batch_indices]).permute(0, 3, 1, 2).float().div(255)
        self.x01 = x.to(self.device)
        mean, std = channel_stats(data.x_train)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        # only the scoring fields: a search's pool size or step count does not change a score
        fields = set(ScoreSetting.model_fields) - {"chunk"}
        self.identity = {"version": SCORE_VERSION, "setting": setting.model_dump(include=fields),
                         "dataset": dataset_identity or {"name": data.name}, "seed": seed}
        self.memo: dict[str, dict] = {}
        self.computed = 0  # scores actually computed (not from memo or artifacts)

    def normalise(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std

    def artifact_key(self, arch: str) -> str:
        return "evas_score/" + content_key({**self.identity, "arch": arch})

    def __call__(self, ops: nb201.Arch) -> dict:
        arch = nb201.to_string(ops)
        if arch in self.memo:
            return self.memo[arch]
        key = self.artifact_key(arch)
        # shared by every search and score cell: checked for damage (and parsed) only
        out = self.artifacts.load(key, lambda b: json.loads(b.decode())) if self.artifacts is not None else None
        if out is None:
            out = self.compute(ops)
            if self.artifacts is not None:
                self.artifacts.put(key, json.dumps(out).encode())
        self.memo[arch] = out
        return out

    def compute(self, ops: nb201.Arch) -> dict:
        s, d = self.setting, self.data
        kappas = []
        for init_seed in self.init_seeds:
            seed_everything(init_seed)  # model, then generator, from this seed
            model = nb201.Network(ops, d.num_classes, s.channels, s.cells_per_stage, d.shape[2]).to(self.device)
            gen = generator_net.TriggerGenerator(d.shape[2], s.variant, s.generator_channels,
                                   self.mean.flatten().cpu(), self.std.flatten().cpu()).to(self.device)
            kappas.append(trigger_ntk_cond(model, gen, self.x01, self.normalise, s.chunk, s.regime))
        self.computed += 1
        return {"score": statistics.median(kappas), "kappas": kappas}


def mutate(ops: nb201.Arch, rng: np.random.Generator) -> nb201.Arch:
    edge = int(rng.integers(len(ops)))
    choices = [op for op in nb201.OPS if op != ops[edge]]
    w = np.array([MUTATION_WEIGHTS[op] for op in choices], dtype=float)
    new = choices[int(rng.choice(len(choices), p=w / w.sum()))]
    return ops[:edge] + (new,) + ops[edge + 1:]


def _visitor(score: Callable[[nb201.Arch], float], history: list[dict]) -> Callable[..., dict]:
    """Score a cell and append it to ``history`` (step = its position, parent = the parent's step)."""
    def visit(ops, parent=None) -> dict:
        entry = {"step": len(history), "arch": nb201.to_string(ops), "score": score(ops)}
        if parent is not None:
            entry["parent"] = parent
        history.append(entry)
        return entry

    return visit


def _best(history: list[dict]) -> dict:
    return min(history, key=lambda e: (e["score"], e["step"]))  # the lowest score, the first on ties


def _log_progress(log, step: int, steps: int, history: list[dict]) -> None:
    if log and (step + 1) % max(1, steps // 20) == 0:
        best = _best(history)
        log(f"evolution step {step + 1}/{steps}: best score {best['score']:.4g} ({best['arch']})")


def _result(history: list[dict]) -> dict:
    best = _best(history)
    return {"arch": best["arch"], "score": best["score"], "history": history,
            "distinct_archs": len({e["arch"] for e in history})}


def aging_evolution(score: Callable[[nb201.Arch], float], params: EvasParams, seed: int,
                    log: Callable[[str], None] | None = None) -> dict:
    """Minimise ``score`` over NB201 cells; returns the best cell and the whole history."""
    if params.sample_size > params.pool_size:
        raise ValueError(f"sample_size {params.sample_size} exceeds pool_size {params.pool_size}")
    if params.evolution == "reference":
        return reference_evolution(score, params, seed, log)
    rng = np.random.default_rng([seed, 0xA61])
    history: list[dict] = []
    visit = _visitor(score, history)

    pool = [visit(nb201.from_index(int(i))) for i in rng.integers(0, nb201.N_ARCHS, params.pool_size)]
    for step in range(params.steps):
        sample = [pool[int(i)] for i in rng.choice(len(pool), params.sample_size, replace=False)]
        parent = _best(sample)
        child = visit(mutate(nb201.parse(parent["arch"]), rng), parent["step"])
        pool = pool[1:] + [child]  # the oldest leaves
        _log_progress(log, step, params.steps, history)
    return _result(history)


def reference_evolution(score: Callable[[nb201.Arch], float], params: EvasParams, seed: int,
                        log: Callable[[str], None] | None = None) -> dict:
    """Evas's ``search_genetic.py`` loop, reproduced as a named variant (not the default): the initial pool
    is ``pool_size`` distinct indices below ``reference_pool_range`` (its ``randperm(10000)``; naspoison's
    index order, not NATS-Bench's, which needs the benchmark file); each step samples ``sample_size`` slots,
    takes the *position* of the lowest score within the sample and mutates ``pool[position]`` (so parents
    come from the first ``sample_size`` slots only); the child replaces the oldest slot (age counters, the
    first on ties) and every age grows by one. The result is the lowest score seen (the first on ties)."""
    if params.pool_size > params.reference_pool_range:
        raise ValueError(f"pool_size {params.pool_size} exceeds reference_pool_range {params.reference_pool_range}")
    rng = np.random.default_rng([seed, 0xA62])
    history: list[dict] = []
    visit = _visitor(score, history)

    pool = [visit(nb201.from_index(int(i))) for i in rng.permutation(params.reference_pool_range)[:params.pool_size]]
    ages = np.zeros(params.pool_size, dtype=np.int64)
    for step in range(params.steps):
        sample = rng.permutation(params.pool_size)[:params.sample_size]
        position = int(np.argmin([pool[int(i)]["score"] for i in sample]))  # a position in the sample ...
        parent = pool[position]                                             # ... used as a pool index
        old = int(np.argmax(ages))
        pool[old] = visit(mutate(nb201.parse(parent["arch"]), rng), parent["step"])
        ages += 1
        ages[old] = 0
        _log_progress(log, step, params.steps, history)
    return _result(history)


class EvasSearch(NASAlgorithm):
    """The registry face of the search: ``search(data, params, seed, ...)`` → the found NB201 cell."""

    name = "evas"
    title = "Evas"
    space = "nb201"
    uses_labels = False
    Params = EvasParams

    def search(self, data: ImageData, params: EvasParams, seed: int, device="cpu", log=None,
               artifacts=None, dataset_identity: dict | None = None) -> dict:
        scorer = Scorer(data, params, seed, dataset_identity, artifacts, device)
        out = aging_evolution(lambda ops: scorer(ops)["score"], params, seed, log)
        out["scores_computed"] = scorer.computed
        out["score_batch"] = scorer.batch_indices.tolist()
        out["init_seeds"] = scorer.init_seeds
        return out


def landscape_archs(arch: str, edges: list[tuple[int, int]]) -> list[str]:
    """Every op on the two ``edges`` ((from, to) node pairs) of ``arch``, the rest fixed: 25 cells, the first
    edge's op slow, in OPS order (Evas Figure 5)."""
    ops = nb201.parse(arch)
    if len(edges) != 2:
        raise ValueError(f"the landscape takes two edges, got {edges}")
    pos = []
    for e in edges:
        if tuple(e) not in nb201.EDGES:
            raise ValueError(f"edge {tuple(e)} is not an NB201 edge; edges: {nb201.EDGES}")
        pos.append(nb201.EDGES.index(tuple(e)))
    out = []
    for a in nb201.OPS:
        for b in nb201.OPS:
            new = list(ops)
            new[pos[0]], new[pos[1]] = a, b
            out.append(nb201.to_string(tuple(new)))
    return out


CONVS = ("nor_conv_1x1", "nor_conv_3x3")


def conv_enumeration(arch: str) -> list[str]:
    """Every assignment of conv1x1/conv3x3 to the conv edges of ``arch``, the rest fixed (Evas appendix
    A.3); 2^k cells for k conv edges, in binary order (1x1 = 0) over the edges in string order."""
    ops = nb201.parse(arch)
    pos = [i for i, op in enumerate(ops) if op in CONVS]
    out = []
    for mask in range(2 ** len(pos)):
        new = list(ops)
        for bit, i in enumerate(reversed(pos)):
            new[i] = CONVS[(mask >> bit) & 1]
        out.append(nb201.to_string(tuple(new)))
    return out
