"""TE-NAS (Chen, Gong & Wang 2021, "Neural Architecture Search on ImageNet in Four GPU Hours: A
Theoretically Inspired Perspective"), written from the paper; pruning order as the authors' DARTS
launcher runs it.

Training-free prune-by-importance on the DARTS supernet with `none` removed (7 ops per edge).
Every round, for every op still alive on an edge with more than one op, measure what removing it
does to (a) the NTK condition number κ of a thin proxy supernet (``channels`` wide, one normal and
one reduction cell, a batch of ``batch_size`` training images, BN in train mode) and (b) the
number of linear regions of an even thinner copy (no stem, 1 channel, on small random crops of
the training images). Rank the relative changes — Δκ = (κ_parent − κ)/κ_parent descending (an op
whose removal lowers κ most ranks first), ΔR = (R_parent − R)/R_parent ascending (an op whose
removal adds most regions ranks first) — sum the two dense ranks over all candidates of both cell
types, and prune the ``prune_per_round`` lowest-sum ops of each edge (7 → 4 → 1). Then, node by
node, the same ranking over the node's incoming edges removes all but two. Each measurement is
the mean over ``repeats``.

Choices, stated once:
* ``init="reference"`` (default): networks keep PyTorch's default initialisation, drawn fresh each
  round; repeats differ only in their data. This is what the published launcher runs: its
  ``--init kaiming_normal`` matches no branch of its ``init_model``, so re-init is a silent no-op.
  ``init="kaiming"``: a real Kaiming-normal re-init per repeat (fan-out for the NTK network,
  fan-in for the linear-region network, BN scale 1 and shift 0), as the code evidently intended.
* The parent's κ and region count are computed once per round (and node group) and repeat, with
  the same weights and data as every candidate of that repeat, not once per candidate. Removal
  is a mask on one network (``SuperNetwork.set_alive``), so parent and child share weights exactly.
* κ follows ``metrics.kappa``'s rule (capped at 1e12, never negative or NaN); relative changes are
  rounded to ``precision`` significant digits before ranking, so numerically equal changes tie.
* Inputs: the NTK batch is ``batch_size`` training images (normalised, not augmented); the
  region inputs are ``lr_batches`` × ``lr_batch_size`` random ``lr_input_size``² crops of one
  random channel of training images — so poisoned images reach both measurements. No labels are
  read.
* Randomness that is ours, not the reference's (docs/fidelity/tenas.md): one NTK batch and one set
  of crops shared by all candidates of a repeat (the reference draws new ones per call); the
  region network's weights drawn once per round (reference: per candidate); no augmentation and
  dataset-statistics normalisation (reference: crop + flip, fixed CIFAR mean/std).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from naspoison.data.augment import channel_stats
from naspoison.data.datasets import ImageData
from naspoison.nas.base import NASAlgorithm
from naspoison.nas.metrics import count_distinct_rows, kappa, linear_regions, ntk_gram, thin_network_kernels, train_mode
from naspoison.params import StrictParams
from naspoison.spaces.darts import EDGES, N_INPUTS, N_NODES, OP_NAMES, Genotype
from naspoison.train import seed_everything
from naspoison._lazy import lazy

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())
darts_supernet = lazy("naspoison.spaces.darts_supernet", globals())  # a torch module: loaded at first use

OPS = OP_NAMES[1:]  # `none` is removed from the start
KINDS = ("normal", "reduce")
CANDIDATES_PER_PASS = 32  # children of one parent measured in one batched pass (a speed knob, not a key)


class TENASParams(StrictParams):
    """Defaults are the paper's DARTS/CIFAR-10 values."""
    batch_size: int = Field(14, gt=1, description="NTK batch")
    channels: int = Field(1, gt=0, description="width of the NTK proxy supernet")
    lr_batch_size: int = Field(1000, gt=0)
    lr_batches: int = Field(3, gt=0)
    lr_input_size: int = Field(3, gt=0)
    prune_per_round: int = Field(3, gt=0)
    repeats: int = Field(3, gt=0)
    init: Literal["reference", "kaiming"] = "reference"
    precision: int = Field(10, gt=0, description="significant digits of a relative change before ranking")


# ----------------------------------------------------------------------------- pure rules
def round_sig(v: float, digits: int) -> float:
    return 0.0 if v == 0 or not math.isfinite(v) else round(v, digits - 1 - math.floor(math.log10(abs(v))))


def dense_ranks(values: list[float], descending: bool) -> list[int]:
    """Rank 0 for the first in order, equal values share a rank, the next distinct value gets +1."""
    distinct = sorted(set(values), reverse=descending)
    pos = {v: i for i, v in enumerate(distinct)}
    return [pos[v] for v in values]


def rank_sum(d_ntk: list[float], d_regions: list[float], precision: int) -> list[tuple[int, int, int]]:
    """(ntk rank, regions rank, sum) per candidate: Δκ descending, ΔR ascending (both dense)."""
    rk = dense_ranks([round_sig(v, precision) for v in d_ntk], descending=True)
    rr = dense_ranks([round_sig(v, precision) for v in d_regions], descending=False)
    return [(a, b, a + b) for a, b in zip(rk, rr)]


def choose_op_prunes(candidates: list[tuple], sums: list[int], alive: dict[str, np.ndarray],
                     per_edge: int) -> list[tuple]:
    """Per edge, the ``per_edge`` lowest rank sums (stable: earlier candidate first), never its last op."""
    order = sorted(range(len(candidates)), key=lambda i: sums[i])
    taken: dict[tuple[str, int], int] = {}
    pruned = []
    for i in order:
        kind, e, _ = candidates[i]
        limit = min(per_edge, int(alive[kind][e].sum()) - 1)
        if taken.get((kind, e), 0) < limit:
            taken[(kind, e)] = taken.get((kind, e), 0) + 1
            pruned.append(candidates[i])
    return pruned


def to_genotype(alive: dict[str, np.ndarray]) -> Genotype:
    """One op per kept edge and two kept edges per node -> the genotype."""
    cells = {}
    for kind in KINDS:
        pairs = []
        for node in range(N_INPUTS, N_INPUTS + N_NODES):
            edges = [e for e, (n, _) in enumerate(EDGES) if n == node and alive[kind][e].any()]
            if len(edges) != 2 or any(alive[kind][e].sum() != 1 for e in edges):
                raise ValueError(f"{kind} node {node}: need 2 edges with one op each")
            pairs += [(OPS[int(np.flatnonzero(alive[kind][e])[0])], EDGES[e][1]) for e in edges]
        cells[kind] = tuple(pairs)
    concat = tuple(range(N_INPUTS, N_INPUTS + N_NODES))
    return Genotype(cells["normal"], concat, cells["reduce"], concat)


def alive_of(genotype: Genotype) -> dict[str, np.ndarray]:
    """The supernet mask of a genotype (the inverse of :func:`to_genotype`): its op on its edges,
    every other edge removed."""
    out = {}
    for kind in KINDS:
        alive = np.zeros((len(EDGES), len(OPS)), dtype=bool)
        for j, (op, inp) in enumerate(getattr(genotype, kind)):
            alive[EDGES.index((N_INPUTS + j // 2, inp)), OPS.index(op)] = True
        out[kind] = alive
    return out


# ----------------------------------------------------------------------------- networks and inputs
def _kaiming(model: nn.Module, mode: str) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Probe:
    """The two proxy networks and the inputs of one repeat; measures (κ, regions) of a mask."""

    def __init__(self, data: ImageData, p: TENASParams, rng: np.random.Generator, device: torch.device,
                 stats: tuple[np.ndarray, np.ndarray] | None = None):
        full = [list(OPS) for _ in EDGES]
        c = data.shape[2]
        proxy = {"affine": True, "pool_bn": False, "head_act": True, "reductions": (1,)}
        self.ntk_net = darts_supernet.SuperNetwork(full, full, p.channels, 2, data.num_classes, in_channels=c, stem_multiplier=1,
                                    **proxy).to(device)
        self.lr_net = darts_supernet.SuperNetwork(full, full, 1, 2, data.num_classes, in_channels=1, stem=False, **proxy).to(device)
        self.p, self.data, self.rng, self.device = p, data, rng, device
        self._functional = self._functional_lr = False
        self.mean, self.std = stats if stats is not None else channel_stats(data.x_train)

    def new_repeat(self) -> None:
        p, data, rng = self.p, self.data, self.rng
        if p.init == "kaiming":
            _kaiming(self.ntk_net, "fan_out")  # the NTK is a backward quantity
            _kaiming(self.lr_net, "fan_in")    # regions are a forward one
        n, h, w, c = data.x_train.shape
        idx = np.sort(rng.choice(n, size=min(p.batch_size, n), replace=False))
        x = data.x_train[idx].astype(np.float32) / 255.0
        self.ntk_x = torch.from_numpy(((x - self.mean) / self.std).transpose(0, 3, 1, 2).astype(np.float32)).to(self.device)
        s = min(p.lr_input_size, h, w)
        m = p.lr_batches * p.lr_batch_size
        img, ch = rng.integers(n, size=m), rng.integers(c, size=m)
        oy, ox = rng.integers(h - s + 1, size=m), rng.integers(w - s + 1, size=m)
        rows, cols = oy[:, None] + np.arange(s), ox[:, None] + np.arange(s)
        crops = data.x_train[img[:, None, None], rows[:, :, None], cols[:, None, :], ch[:, None, None]] / 255.0
        crops = (crops - self.mean[ch][:, None, None]) / self.std[ch][:, None, None]
        self.lr_x = torch.from_numpy(crops[:, None].astype(np.float32)).to(self.device)

    def measure(self, alive: dict[str, np.ndarray]) -> tuple[float, float]:
        for net in (self.ntk_net, self.lr_net):
            net.set_alive(alive["normal"], alive["reduce"])
        with thin_network_kernels(self.device):  # only here: for 1000-image region batches oneDNN is faster
            k = kappa(ntk_gram(self.ntk_net, self.ntk_x))
        r = linear_regions(self.lr_net, self.lr_x, chunk=self.p.lr_batch_size)
        return k, r

    def regions(self, alive: dict[str, np.ndarray]) -> float:
        self.lr_net.set_alive(alive["normal"], alive["reduce"])
        return linear_regions(self.lr_net, self.lr_x, chunk=self.p.lr_batch_size)

    def child_regions(self, parent: dict[str, np.ndarray], removed: list[tuple]) -> list[float]:
        """Linear-region counts of each child of ``parent`` lacking one op (its edge keeping at least one), as
        :meth:`regions` counts them, ``CANDIDATES_PER_PASS`` children per forward (vmap over their alphas,
        BN statistics per child). The network computes the parent's ops; a child's removed op gets weight
        exactly 0, and the ReLU units inside it — which the child network does not have — are set to a
        constant column for that child, which leaves the number of distinct sign patterns unchanged."""
        from torch.func import functional_call, vmap

        net = self.lr_net
        net.set_alive(parent["normal"], parent["reduce"])
        if not self._functional_lr:
            torch.func.replace_all_batch_norm_modules_(net)
            self._functional_lr = True
        owner: dict[int, tuple] = {}  # ReLU module -> the (kind, edge, op) it belongs to
        for cell in net.cells:
            kind = "reduce" if cell.reduction else "normal"
            for e, edge in enumerate(cell.edges):
                for o, op in enumerate(edge.ops):
                    owner.update({id(m): (kind, e, o) for m in op.modules() if isinstance(m, nn.ReLU)})
        feats: list[torch.Tensor] = []
        fired: list[tuple | None] = []

        def hook(module, inputs, output):
            if output.dim() == 4:  # as activation_patterns: convolutional feature maps only
                feats.append((output > 0).flatten(1))
                fired.append(owner.get(id(module)))

        fixed = {n: q.detach() for n, q in net.named_parameters() if not n.startswith("alpha_")}

        def patterns(xb, a_normal, a_reduce):
            feats.clear()
            fired.clear()
            functional_call(net, {**fixed, "alpha_normal": a_normal, "alpha_reduce": a_reduce}, (xb,))
            return tuple(feats)

        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
        out: list[float] = []
        try:
            for i in range(0, len(removed), CANDIDATES_PER_PASS):
                group = removed[i:i + CANDIDATES_PER_PASS]
                a_n, a_r = self._child_alphas(parent, group)
                rows = []
                with torch.no_grad(), train_mode(net):
                    for j in range(0, len(self.lr_x), self.p.lr_batch_size):
                        per_module = vmap(patterns, in_dims=(None, 0, 0))(self.lr_x[j:j + self.p.lr_batch_size], a_n, a_r)
                        cols = []
                        for f, who in zip(per_module, fired):
                            if who is not None:  # the removed op's own units: a constant column for that child
                                gone = torch.tensor([c == who for c in group], device=f.device)
                                f = f & ~gone[:, None, None]
                            cols.append(f)
                        rows.append(torch.cat(cols, 2).cpu())
                patterns_all = torch.cat(rows, 1).numpy()
                out += [float(count_distinct_rows(p)) for p in patterns_all]
        finally:
            for h in handles:
                h.remove()
        return out

    def _child_alphas(self, parent: dict[str, np.ndarray], group: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per child, alphas 0 on its alive ops and −inf elsewhere (set_alive's softmax weights)."""
        alphas = {k: [] for k in KINDS}
        for kind, e, o in group:
            if parent[kind][e].sum() < 2:
                raise ValueError(f"removing op {o} would leave {kind} edge {e} empty")
            for k in KINDS:
                m = parent[k].copy()
                if k == kind:
                    m[e, o] = False
                alphas[k].append(torch.where(torch.from_numpy(m), 0.0, float("-inf")))
        return tuple(torch.stack(alphas[k]).to(self.device) for k in KINDS)

    def child_kappas(self, parent: dict[str, np.ndarray], removed: list[tuple]) -> list[float]:
        """κ of each child of ``parent`` that lacks one op (kind, edge, op), the edge keeping at least one:
        the same number :meth:`measure` gives (equal up to float rounding, ~1e-7 relative), with
        ``CANDIDATES_PER_PASS`` children per pass. The network computes the parent's ops; each child's
        alphas give its removed op weight exactly 0 (so it adds exact zeros and its weights get zero
        gradient columns, which leave the Gram unchanged) and spread the softmax over its own alive ops,
        as ``set_alive`` does. One batched forward and backward (``torch.func``: vmap over the children,
        jacrev over the samples) replaces a forward and ``batch_size`` backward passes per child: on
        these thin proxies the time is per-op overhead, which the batch shares."""
        from torch.func import functional_call, jacrev, vmap

        net, x = self.ntk_net, self.ntk_x
        net.set_alive(parent["normal"], parent["reduce"])
        if not self._functional:  # BN in train mode reads batch statistics only; vmap cannot update running ones
            torch.func.replace_all_batch_norm_modules_(net)
            self._functional = True
        names = [n for n, q in net.named_parameters() if n.rsplit(".", 1)[-1] == "weight" and q.requires_grad]
        weights = {n: q.detach() for n, q in net.named_parameters() if n in names}
        fixed = {n: q.detach() for n, q in net.named_parameters() if n not in names}

        def summed_logits(w, a_normal, a_reduce):
            return functional_call(net, {**fixed, **w, "alpha_normal": a_normal, "alpha_reduce": a_reduce}, (x,)).sum(1)

        out: list[float] = []
        for i in range(0, len(removed), CANDIDATES_PER_PASS):
            a_n, a_r = self._child_alphas(parent, removed[i:i + CANDIDATES_PER_PASS])
            with train_mode(net), thin_network_kernels(self.device):
                jac = vmap(jacrev(summed_logits), in_dims=(None, 0, 0))(weights, a_n, a_r)
            j = torch.cat([jac[n].reshape(len(a_n), len(x), -1) for n in names], 2).double()
            out += [kappa(g) for g in torch.bmm(j, j.transpose(1, 2))]
        return out


# ----------------------------------------------------------------------------- the search
class TENAS(NASAlgorithm):
    name = "tenas"
    title = "TE-NAS"
    uses_data = True
    uses_labels = False  # no label-flip rows
    Params = TENASParams

    def search(self, data: ImageData, params: TENASParams, seed: int, device="cpu",
               log: Callable[[str], None] | None = None) -> dict:
        log = log or (lambda msg: None)
        device = torch.device(device)
        seed_everything(seed)
        rng = np.random.default_rng([seed, 0x7E4A5])
        alive = {k: np.ones((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
        stats = channel_stats(data.x_train)  # one pass over the training set, not one per round
        rounds: list[dict] = []
        while any(alive[k].sum(1).max() > 1 for k in KINDS):
            t0 = time.perf_counter()
            cands = [(k, e, o) for k in KINDS for e in range(len(EDGES)) if alive[k][e].sum() > 1
                     for o in np.flatnonzero(alive[k][e]).tolist()]
            record = self._score(cands, alive, data, params, rng, device, stats)
            pruned = choose_op_prunes(cands, [s for _, _, s in record["ranks"]], alive, params.prune_per_round)
            for k, e, o in pruned:
                alive[k][e, o] = False
            rounds.append({"phase": "ops", **record, "pruned": [list(c) for c in pruned],
                           "seconds": time.perf_counter() - t0})
            log(f"round {len(rounds)}: {len(cands)} candidate ops × {params.repeats} repeats, pruned "
                f"{len(pruned)}; {int(alive['normal'].sum(1).max())} op(s)/edge left "
                f"({rounds[-1]['seconds']:.1f}s)")
        for k in KINDS:
            for node in range(N_INPUTS, N_INPUTS + N_NODES):
                edges = [e for e, (n, _) in enumerate(EDGES) if n == node]
                if len(edges) <= 2:
                    continue
                t0 = time.perf_counter()
                cands = [(k, e, int(np.flatnonzero(alive[k][e])[0])) for e in edges]
                record = self._score(cands, alive, data, params, rng, device, stats)
                order = sorted(range(len(cands)), key=lambda i: record["ranks"][i][2])
                pruned = [cands[i] for i in order[:len(cands) - 2]]  # the two highest sums stay
                for kk, e, o in pruned:
                    alive[kk][e, o] = False
                rounds.append({"phase": f"edges {k} node {node}", **record, "pruned": [list(c) for c in pruned],
                               "seconds": time.perf_counter() - t0})
                log(f"{k} node {node}: kept 2 of {len(edges)} edges ({rounds[-1]['seconds']:.1f}s)")
        genotype = to_genotype(alive)
        return {"genotype": genotype.to_dict(), "init": params.init, "ops": list(OPS), "rounds": rounds}

    def _score(self, cands: list[tuple], alive: dict[str, np.ndarray], data: ImageData, p: TENASParams,
               rng: np.random.Generator, device: torch.device,
               stats: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """Mean relative changes of κ and regions over the repeats for removing each candidate."""
        probe = Probe(data, p, rng, device, stats)  # fresh weights every round (the reference's behaviour)
        d_ntk = np.zeros(len(cands))
        d_reg = np.zeros(len(cands))
        parents = []
        # children whose edge keeps an op share the parent's κ pass (op rounds); removing an edge's last op
        # (edge rounds: a handful of candidates) is measured one network at a time
        batched = [i for i, (kind, e, _) in enumerate(cands) if alive[kind][e].sum() > 1]
        for _ in range(p.repeats):
            probe.new_repeat()
            k0, r0 = probe.measure(alive)
            parents.append([k0, r0])
            kappas = dict(zip(batched, probe.child_kappas(alive, [cands[i] for i in batched])))
            regions = dict(zip(batched, probe.child_regions(alive, [cands[i] for i in batched])))
            for i, (kind, e, o) in enumerate(cands):
                child = {k: v.copy() for k, v in alive.items()}
                child[kind][e, o] = False
                if i in kappas:
                    k1, r1 = kappas[i], regions[i]
                else:
                    k1, r1 = probe.measure(child)
                d_ntk[i] += (k0 - k1) / k0 / p.repeats
                d_reg[i] += (r0 - r1) / r0 / p.repeats
        ranks = rank_sum(d_ntk.tolist(), d_reg.tolist(), p.precision)
        return {"candidates": [list(c) for c in cands], "d_ntk": d_ntk.tolist(), "d_regions": d_reg.tolist(),
                "ranks": [list(r) for r in ranks], "parent_kappa_regions": parents}
