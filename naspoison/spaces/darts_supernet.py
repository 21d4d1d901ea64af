"""The DARTS supernet (Liu et al. 2019) as P-DARTS searches it (Chen et al. 2019).

Built from the same definition as the evaluation network (``darts.OPS``, ``EDGES``,
``edge_stride``, ``preprocess_inputs``, ``reduction_positions``): every edge is a *mixed op*, the
softmax(alpha)-weighted sum of the ops still alive on that edge. Alive ops are given per edge
(P-DARTS drops ops between stages, so edges differ), as op names.

Search-time conventions of DARTS/P-DARTS: BN without affine parameters, pooling followed by BN,
and (P-DARTS) dropout after the identity skip-connect, its rate set by the search schedule.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from naspoison.spaces.darts import EDGES, N_INPUTS, N_NODES, OP_NAMES
from naspoison.spaces.darts_net import OPS, edge_stride, preprocess_inputs, reduction_positions

EdgeOps = Sequence[Sequence[str]]  # per edge (in EDGES order), the alive op names


class MixedOp(nn.Module):
    def __init__(self, C: int, stride: int, op_names: Sequence[str], affine: bool = False, pool_bn: bool = True):
        super().__init__()
        self.op_names = tuple(op_names)
        self.stride = stride
        self.skip_dropout = nn.Dropout(0.0)
        self.alive: tuple[bool, ...] | None = None  # set by SuperNetwork.set_alive; None: all alive
        ops = []
        for name in self.op_names:
            op = OPS[name](C, stride, affine)
            if "pool" in name and pool_bn:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=affine))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = 0
        for i, (w, name, op) in enumerate(zip(weights, self.op_names, self.ops)):
            if name == "none" or (self.alive is not None and not self.alive[i]):
                continue  # exactly zero (or weight 0): the sum and every gradient are unchanged without it
            y = op(x)
            if isinstance(op, nn.Identity):  # P-DARTS: dropout on the parameter-free skip only
                y = self.skip_dropout(y)
            out = out + w * y
        if isinstance(out, int):  # only `none` (or nothing) alive on this edge
            return x[:, :, ::self.stride, ::self.stride] * 0.0
        return out


class SearchCell(nn.Module):
    def __init__(self, edge_ops: EdgeOps, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool, affine: bool = False, pool_bn: bool = True):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess_inputs(c_prev_prev, c_prev, c, reduction_prev, affine=affine)
        self.edges = nn.ModuleList(
            MixedOp(c, edge_stride(reduction, inp), names, affine, pool_bn) for (_, inp), names in zip(EDGES, edge_ops, strict=True)
        )
        self.multiplier = N_NODES

    def forward(self, s0, s1, weights: torch.Tensor):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for node in range(N_INPUTS, N_INPUTS + N_NODES):
            h = 0
            for inp in range(node):
                h = h + self.edges[e](states[inp], weights[e])
                e += 1
            states.append(h)
        return torch.cat(states[N_INPUTS:], dim=1)


class SuperNetwork(nn.Module):
    """Stem, ``layers`` search cells (reductions at 1/3 and 2/3), global pooling, classifier.

    ``alpha_normal``/``alpha_reduce`` are [14, k] (k alive ops per edge, equal on every edge of
    a cell type); ``weight_parameters()`` is everything else.

    Proxy variants (TE-NAS, whose supernet is NAS-Bench-201's DARTS-style tiny network):
    ``affine`` BN parameters, ``pool_bn=False`` (no BN after pooling), ``head_act=True`` (BN + ReLU
    before global pooling — without it every edge output is batch-centred in train mode, so the
    summed logits of a batch are constant and the NTK is exactly singular), ``stem=False`` (cells
    read the input directly) and explicit ``reductions`` positions (e.g. 2 cells,
    ``reductions=(1,)``: one normal cell then one reduction cell).
    """

    def __init__(self, normal_ops: EdgeOps, reduce_ops: EdgeOps, C: int, layers: int, num_classes: int,
                 in_channels: int = 3, stem_multiplier: int = 3, alpha_init_std: float = 1e-3,
                 affine: bool = False, stem: bool = True, reductions: Sequence[int] | None = None,
                 pool_bn: bool = True, head_act: bool = False):
        super().__init__()
        for kind, table in (("normal", normal_ops), ("reduce", reduce_ops)):
            if len(table) != len(EDGES) or len({len(ops) for ops in table}) != 1:
                raise ValueError(f"{kind}: need {len(EDGES)} edges with the same number of ops each")
            unknown = {op for ops in table for op in ops} - set(OP_NAMES)
            if unknown:
                raise ValueError(f"{kind}: unknown ops {sorted(unknown)}")
        self.normal_ops = [tuple(ops) for ops in normal_ops]
        self.reduce_ops = [tuple(ops) for ops in reduce_ops]
        reductions = tuple(reduction_positions(layers) if reductions is None else reductions)
        if stem:
            c_curr = stem_multiplier * C
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        else:
            c_curr = in_channels
            self.stem = nn.Identity()
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = SearchCell(self.reduce_ops if reduction else self.normal_ops, c_pp, c_p, c_curr, reduction,
                              reduction_prev, affine, pool_bn)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
        self.head_act = nn.Sequential(nn.BatchNorm2d(c_p, affine=affine), nn.ReLU()) if head_act else nn.Identity()
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.alpha_normal = nn.Parameter(alpha_init_std * torch.randn(len(EDGES), len(self.normal_ops[0])))
        self.alpha_reduce = nn.Parameter(alpha_init_std * torch.randn(len(EDGES), len(self.reduce_ops[0])))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def set_skip_dropout(self, p: float) -> None:
        for m in self.modules():
            if isinstance(m, MixedOp):
                m.skip_dropout.p = p

    def set_alive(self, normal: Sequence[Sequence[bool]], reduce: Sequence[Sequence[bool]]) -> None:
        """Mask ops out without rebuilding (TE-NAS pruning): dead ops get alpha −inf, so the
        softmax spreads uniformly over the alive ones, and are not computed at all. An edge with
        no alive op is removed (it contributes zero)."""
        for kind, table in (("normal", normal), ("reduce", reduce)):
            alpha = getattr(self, f"alpha_{kind}")
            mask = torch.tensor([list(map(bool, row)) for row in table], device=alpha.device)
            if mask.shape != alpha.shape:
                raise ValueError(f"{kind}: need a {tuple(alpha.shape)} mask, got {tuple(mask.shape)}")
            with torch.no_grad():
                alpha.copy_(torch.where(mask, 0.0, float("-inf")))
            for cell in self.cells:
                if cell.reduction == (kind == "reduce"):
                    for edge, row in zip(cell.edges, mask.tolist(), strict=True):
                        edge.alive = tuple(row)

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {"normal": F.softmax(self.alpha_normal.detach(), dim=-1),
                "reduce": F.softmax(self.alpha_reduce.detach(), dim=-1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal = F.softmax(self.alpha_normal, dim=-1)
        w_reduce = F.softmax(self.alpha_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(self.global_pooling(self.head_act(s1)).flatten(1))


class PairOutput(nn.Module):
    """A supernet returns logits; attacks expect (logits, auxiliary) like every trained network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), None
