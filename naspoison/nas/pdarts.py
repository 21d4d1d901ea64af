"""P-DARTS (Chen et al. 2019, "Progressive Differentiable Architecture Search"), written from the paper.

The search runs in stages of growing depth (5 → 11 → 17 cells). Each stage builds a fresh
supernet over the ops still alive, trains its weights alone for a warm-up, then alternates
first-order updates: Adam on the alphas with a batch from the alpha half of the training set, SGD
on the weights with a batch from the weight half. After a stage, each edge keeps its strongest ops
(8 → 5 → 3 → 1 by softmax weight; `none` goes first in the last stage). The final genotype takes,
per node, the two strongest incoming edges with one op each, and the normal cell is cut to at most
``skip_cap`` skip-connects by removing the weakest ones.

Poisoning enters through ``data``: the search sees the (possibly poisoned) training set in both
halves and never the test set; retraining on clean data happens elsewhere.

Choices where the paper is silent, stated once:
* Skip-connect dropout decays as in the authors' published schedule: during warm-up epoch e of E,
  ``rate·(E−e−1)/E``; afterwards ``rate·exp(−0.2·(e−warm-up))`` (see ``skip_dropout_rate``).
* The weight learning rate follows cosine annealing evaluated at the start of each epoch.
* Alpha and weight gradients are both clipped to norm ``grad_clip``.
* Ties in softmax weight: among equal ops the one earlier in ``OP_NAMES`` is dropped first; among
  equal edges the earlier edge is kept.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
from pydantic import Field, model_validator

from naspoison.data.augment import DeviceImages, augment, channel_stats
from naspoison.data.datasets import ImageData
from naspoison.nas.base import NASAlgorithm
from naspoison.params import StrictParams
from naspoison.run import checkpoint
from naspoison.spaces.darts import EDGES, N_INPUTS, N_NODES, OP_NAMES, Genotype
from naspoison.train import Precision, autocast_for, seed_everything
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())
darts_supernet = lazy("naspoison.spaces.darts_supernet", globals())  # a torch module: loaded at first use

SKIP = "skip_connect"
NONE = "none"


class PDARTSParams(StrictParams):
    """Defaults are the paper's CIFAR-10 values except ``skip_dropout``, which depends on the
    dataset (0.0/0.4/0.7 on CIFAR-10, 0.1/0.2/0.3 on CIFAR-100) and so must be given."""
    cells: list[int] = Field(default_factory=lambda: [5, 11, 17], min_length=1)
    ops_kept: list[int] = Field(default_factory=lambda: [5, 3, 1], min_length=1)
    skip_dropout: list[float]
    dropout_decay: float = Field(0.2, ge=0)
    epochs: int = Field(25, gt=0)
    warmup_epochs: int = Field(10, ge=0)
    batch_size: int = Field(96, gt=0)
    init_channels: int = Field(16, gt=0)
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    arch_lr: float = Field(6e-4, gt=0)
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = Field(1e-3, ge=0)
    train_portion: float = Field(0.5, gt=0, lt=1)
    search_size: int | None = Field(None, gt=1)  # use a seeded subset of the training set (lab/demo)
    skip_cap: int = Field(2, ge=0, le=2 * N_NODES)
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    precision: Precision = "fp32"

    @model_validator(mode="after")
    def _consistent(self) -> PDARTSParams:
        n = len(self.cells)
        if len(self.ops_kept) != n or len(self.skip_dropout) != n:
            raise ValueError(f"cells, ops_kept and skip_dropout need one entry per stage; got "
                             f"{len(self.cells)}, {len(self.ops_kept)} and {len(self.skip_dropout)}")
        if any(c < 3 for c in self.cells):
            raise ValueError(f"cells {self.cells}: a supernet needs at least 3 cells (two are reductions)")
        sizes = [len(OP_NAMES), *self.ops_kept]
        if any(a <= b for a, b in pairwise(sizes)) or self.ops_kept[-1] != 1:
            raise ValueError(f"ops_kept {self.ops_kept} must fall strictly from {len(OP_NAMES)} and end at 1")
        if any(not 0 <= r < 1 for r in self.skip_dropout):
            raise ValueError(f"skip_dropout {self.skip_dropout}: rates must lie in [0, 1)")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} leaves no epoch for the alphas (epochs {self.epochs})")
        return self


# ----------------------------------------------------------------------------- pure rules
def skip_dropout_rate(rate: float, epoch: int, epochs: int, warmup: int, decay: float = 0.2) -> float:
    """The skip-connect dropout rate of ``epoch``: linear decay over warm-up, then exponential."""
    if epoch < warmup:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-(epoch - warmup) * decay)


def keep_strongest(edge_ops: Sequence[Sequence[str]], probs: np.ndarray, keep: int,
                   none_first: bool = False) -> list[list[str]]:
    """Per edge, keep the ``keep`` ops with the largest weight (in their original order).

    ``none_first``: `none` is dropped before anything else (P-DARTS's last stage)."""
    out = []
    for ops, p in zip(edge_ops, probs, strict=True):
        # drop order: `none` first if asked, then ascending weight, ties dropped in op order
        order = sorted(range(len(ops)), key=lambda i: (not (none_first and ops[i] == NONE), p[i], i))
        dropped = set(order[:len(ops) - keep])
        out.append([op for i, op in enumerate(ops) if i not in dropped])
    return out


Chosen = list[tuple[int, str, float]]  # (edge index into EDGES, op, its weight), two per node


def derive_cell(edge_ops: Sequence[Sequence[str]], probs: np.ndarray,
                banned: frozenset[tuple[int, str]] = frozenset()) -> Chosen | None:
    """Per node the two strongest incoming edges, each with its strongest op (never `none`, never a
    banned (edge, op)); an edge's strength is the weight of that op. None if a node lacks 2 edges."""
    best_op: list[tuple[str, float] | None] = []
    for e, (ops, p) in enumerate(zip(edge_ops, probs, strict=True)):
        cands = [(op, float(p[i])) for i, op in enumerate(ops) if op != NONE and (e, op) not in banned]
        best_op.append(max(cands, key=lambda c: c[1]) if cands else None)  # ties: earlier op
    chosen: Chosen = []
    for node in range(N_INPUTS, N_INPUTS + N_NODES):
        edges = [e for e, (n, _) in enumerate(EDGES) if n == node and best_op[e] is not None]
        if len(edges) < 2:
            return None
        strongest = sorted(edges, key=lambda e: -best_op[e][1])[:2]  # stable: earlier edge wins a tie
        chosen += [(e, *best_op[e]) for e in sorted(strongest)]
    return chosen


def cap_skips(edge_ops: Sequence[Sequence[str]], probs: np.ndarray, cap: int,
              banned: frozenset[tuple[int, str]] = frozenset()) -> tuple[Chosen | None, frozenset]:
    """Derive the cell; while it has more than ``cap`` skip-connects, ban the weakest chosen one
    and derive again (its edge falls back to its next op, or loses its place to another edge).
    Returns the cell (None if unreachable) and the banned (edge, op) set."""
    while True:
        chosen = derive_cell(edge_ops, probs, banned)
        if chosen is None:
            return None, banned
        skips = [(w, e) for e, op, w in chosen if op == SKIP]
        if len(skips) <= cap:
            return chosen, banned
        banned = banned | {(min(skips)[1], SKIP)}


def to_pairs(chosen: Chosen) -> tuple[tuple[str, int], ...]:
    return tuple((op, EDGES[e][1]) for e, op, _ in chosen)


# ----------------------------------------------------------------------------- the search
class PDARTS(NASAlgorithm):
    name = "pdarts"
    title = "P-DARTS"
    uses_data = True
    uses_labels = True
    gc_target = "alphas"  # NAS-aware gradient canceling moves the converged supernet's alphas
    Params = PDARTSParams

    def search(self, data: ImageData, params: PDARTSParams, seed: int, device="cpu",
               log: Callable[[str], None] | None = None,
               on_epoch: Callable[[dict], None] | None = None, keep: dict | None = None) -> dict:
        """``keep``, if given, receives the converged (last-stage) supernet as ``keep["supernet"]``."""
        log = log or (lambda msg: None)
        device = torch.device(device)
        seed_everything(seed)
        weights_half, alpha_half, split = _split(data, params, seed, device)
        gen = torch.Generator(device=device).manual_seed(seed)
        ops = {kind: [list(OP_NAMES) for _ in EDGES] for kind in ("normal", "reduce")}
        stages: list[dict] = []
        n_stages = len(params.cells)
        for s, (cells, kept, rate) in enumerate(zip(params.cells, params.ops_kept, params.skip_dropout)):
            model = darts_supernet.SuperNetwork(ops["normal"], ops["reduce"], params.init_channels, cells, data.num_classes,
                                 in_channels=data.shape[2]).to(device)
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            tag = f"stage {s + 1}/{n_stages} ({cells} cells, {len(ops['normal'][0])} ops/edge)"
            curves = _train_stage(model, weights_half, alpha_half, params, rate, gen,
                                  lambda m, tag=tag, s=s: (log(f"{tag} {_fmt(m)}"),
                                                           on_epoch and on_epoch({"stage": s, **m})))
            probs = {k: v.double().cpu().numpy() for k, v in model.probabilities().items()}
            last = s == n_stages - 1
            final_ops, final_probs = ops, probs
            ops = {k: keep_strongest(ops[k], probs[k], kept, none_first=last) for k in ops}
            stages.append({
                "cells": cells, "ops": final_ops, "kept": ops,
                "alpha": {"normal": model.alpha_normal.detach().double().cpu().tolist(),
                          "reduce": model.alpha_reduce.detach().double().cpu().tolist()},
                "probs": {k: v.tolist() for k, v in probs.items()},
                "skip_dropout_rate": rate, "curves": curves,
                "alpha_half_acc": _accuracy(model, alpha_half, params.batch_size),
            })
            log(f"{tag} done: kept {kept} op(s) per edge; accuracy on the alpha half {stages[-1]['alpha_half_acc']:.4f}")
        if keep is not None:
            keep["supernet"] = model
        return {**_derive(final_ops, final_probs, params.skip_cap), "stages": stages, "split": split}


def _derive(ops: dict, probs: dict, skip_cap: int) -> dict:
    """The final genotype from the last stage's alive ops and weights, plus every skip-capped variant."""
    reduce = derive_cell(ops["reduce"], probs["reduce"])
    normal = derive_cell(ops["normal"], probs["normal"])
    if reduce is None or normal is None:
        raise RuntimeError("P-DARTS: a node has fewer than two edges with a non-`none` op; keep more ops per edge")
    concat = tuple(range(N_INPUTS, N_INPUTS + N_NODES))

    def genotype(cell: Chosen) -> dict:
        return Genotype(to_pairs(cell), concat, to_pairs(reduce), concat).to_dict()

    variants, banned, chosen = [], frozenset(), normal
    n_skips = sum(op == SKIP for _, op, _ in normal)
    for cap in range(n_skips - 1, -1, -1):  # every cap below the uncapped count, each from the last
        if chosen is not None:
            chosen, banned = cap_skips(ops["normal"], probs["normal"], cap, banned)
        variants.append({"cap": cap, "genotype": genotype(chosen) if chosen else None,
                         "banned": sorted([e, op] for e, op in banned)})
    picked = genotype(normal) if n_skips <= skip_cap else next(v for v in variants if v["cap"] == skip_cap)["genotype"]
    if picked is None:
        raise RuntimeError(f"P-DARTS: no normal cell with at most {skip_cap} skip-connects among the alive ops")
    return {"genotype": picked,
            "uncapped_genotype": genotype(normal), "skip_cap": skip_cap, "skip_variants": variants}


def _split(data: ImageData, params: PDARTSParams, seed: int, device: torch.device):
    """The seeded 50/50 (``train_portion``) split of the (optionally subsampled) training set."""
    rng = np.random.default_rng([seed, 0x9DA75])
    n = len(data.y_train)
    pool = np.arange(n)
    if params.search_size is not None and params.search_size < n:
        pool = np.sort(rng.choice(n, params.search_size, replace=False))
    perm = rng.permutation(pool)
    n_w = round(len(perm) * params.train_portion)
    if n_w < 1 or n_w >= len(perm):
        raise ValueError(f"P-DARTS: {len(perm)} samples cannot be split {params.train_portion:g}/{1 - params.train_portion:g}")
    w_idx, a_idx = np.sort(perm[:n_w]), np.sort(perm[n_w:])
    mean, std = channel_stats(data.x_train[pool])
    halves = [DeviceImages(data.x_train[i], data.y_train[i], device, mean, std) for i in (w_idx, a_idx)]
    return halves[0], halves[1], {"weights": n_w, "alphas": len(a_idx), "of": n}


class _Cycle:
    """Endless shuffled batches of one half (a new permutation each pass; the last batch of a
    pass may be short, as a DataLoader without drop_last gives)."""

    def __init__(self, data: DeviceImages, batch_size: int, gen: torch.Generator):
        self.data, self.bs, self.gen = data, batch_size, gen
        self.perm, self.pos = None, len(data)

    def next_indices(self) -> torch.Tensor:
        if self.pos >= len(self.data):
            self.perm, self.pos = torch.randperm(len(self.data), generator=self.gen, device=self.data.x.device), 0
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return idx


def _train_stage(model: darts_supernet.SuperNetwork, weights_half: DeviceImages, alpha_half: DeviceImages,
                 p: PDARTSParams, rate: float, gen: torch.Generator, report: Callable[[dict], None]) -> dict:
    device = weights_half.x.device
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    opt_w = torch.optim.SGD(w_params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    opt_a = torch.optim.Adam(a_params, lr=p.arch_lr, betas=p.arch_betas, weight_decay=p.arch_weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_w, p.epochs, eta_min=p.lr_min)
    criterion = nn.CrossEntropyLoss()
    n = len(weights_half)
    steps = math.ceil(n / p.batch_size)
    alpha_batches = _Cycle(alpha_half, p.batch_size, gen)
    curves: dict[str, list] = {k: [] for k in ("lr", "skip_dropout", "train_loss", "train_acc", "arch_loss", "arch_acc")}

    def batch(half: DeviceImages, idx: torch.Tensor):
        x = half.normalise(augment(half.x[idx], gen, p.crop_padding, p.flip))  # both halves augmented, as in search
        return x, half.y[idx]

    ck = checkpoint.loop("pdarts_stage", [model], [opt_w, opt_a], [sched], [gen])
    state = ck.resume({"epoch": 0, "curves": curves, "cycle": [alpha_batches.perm, alpha_batches.pos]})
    curves, (alpha_batches.perm, alpha_batches.pos) = state["curves"], state["cycle"]
    alpha_batches.perm = None if alpha_batches.perm is None else alpha_batches.perm.to(device)
    for epoch in range(state["epoch"], p.epochs):
        t0 = time.perf_counter()
        drop = skip_dropout_rate(rate, epoch, p.epochs, p.warmup_epochs, p.dropout_decay)
        model.set_skip_dropout(drop)
        model.train()
        train_arch = epoch >= p.warmup_epochs
        perm = torch.randperm(n, generator=gen, device=device)
        sums = torch.zeros(4, device=device)  # weight loss·n, weight correct, arch loss·n, arch correct
        n_arch = 0
        for s in range(steps):
            if train_arch:
                xa, ya = batch(alpha_half, alpha_batches.next_indices())
                with autocast_for(device, p.precision):
                    logits_a = model(xa)
                    loss_a = criterion(logits_a, ya)
                opt_a.zero_grad(set_to_none=True)
                loss_a.backward()
                nn.utils.clip_grad_norm_(a_params, p.grad_clip)
                opt_a.step()
                sums[2] += loss_a.detach() * len(ya)
                sums[3] += (logits_a.detach().argmax(1) == ya).sum()
                n_arch += len(ya)
            xb, yb = batch(weights_half, perm[s * p.batch_size:(s + 1) * p.batch_size])
            with autocast_for(device, p.precision):
                logits = model(xb)
                loss = criterion(logits, yb)
            opt_w.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(w_params, p.grad_clip)
            opt_w.step()
            sums[0] += loss.detach() * len(yb)
            sums[1] += (logits.detach().argmax(1) == yb).sum()
        curves["lr"].append(sched.get_last_lr()[0])
        sched.step()
        totals = sums.tolist()  # one host sync per epoch
        curves["skip_dropout"].append(drop)
        curves["train_loss"].append(totals[0] / n)
        curves["train_acc"].append(totals[1] / n)
        curves["arch_loss"].append(totals[2] / n_arch if n_arch else None)
        curves["arch_acc"].append(totals[3] / n_arch if n_arch else None)
        if not math.isfinite(curves["train_loss"][-1]):
            raise FloatingPointError(f"P-DARTS diverged at epoch {epoch}: loss {curves['train_loss'][-1]}")
        report({"epoch": epoch, "seconds": time.perf_counter() - t0, **{k: v[-1] for k, v in curves.items()}})
        ck.save_if_due(lambda e=epoch: {"epoch": e + 1, "curves": curves, "cycle": [alpha_batches.perm, alpha_batches.pos]},
                       final=epoch + 1 == p.epochs)
    return curves


@no_grad
def _accuracy(model: nn.Module, data: DeviceImages, batch_size: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        correct += int((model(data.normalise(data.x[i:i + batch_size])).argmax(1) == data.y[i:i + batch_size]).sum())
    return correct / len(data)


def _fmt(m: dict) -> str:
    arch = f" arch loss {m['arch_loss']:.3f} acc {m['arch_acc']:.3f}" if m["arch_loss"] is not None else " (warm-up)"
    return (f"epoch {m['epoch'] + 1}: loss {m['train_loss']:.3f} acc {m['train_acc']:.3f}{arch} "
            f"lr {m['lr']:.4f} skip-drop {m['skip_dropout']:.3f} {m['seconds']:.1f}s")
