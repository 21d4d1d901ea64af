"""The NAS-Bench-201 / NATS-Bench topology space: a cell of 4 nodes and 6 edges (node j takes every
node i < j), each edge one of 5 ops. 5⁶ = 15,625 cells.

The standard arch string lists, per node 1..3, its incoming edges as ``op~i``:
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.

``to_index``/``from_index`` number the cells 0..15,624 in base 5 over the edges in string order,
ops in ``OPS`` order. This is naspoison's own numbering, not NATS-Bench's file order (which comes from
its meta file); lookups through ``nats_bench`` go by arch string.
"""
from __future__ import annotations

import torch
from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = tuple((i, j) for j in range(1, 4) for i in range(j))  # (from, to) in arch-string order
N_ARCHS = len(OPS) ** len(EDGES)

Arch = tuple[str, ...]  # one op per edge, in EDGES order


def parse(arch: str) -> Arch:
    """Ops per edge from an arch string; errors name what is wrong."""
    nodes = arch.split("+")
    if len(nodes) != 3:
        raise ValueError(f"arch string {arch!r}: need 3 node groups separated by '+', got {len(nodes)}")
    ops = []
    for j, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")):
            raise ValueError(f"arch string {arch!r}: node {j} group {group!r} must start and end with '|'")
        items = group[1:-1].split("|")
        if len(items) != j:
            raise ValueError(f"arch string {arch!r}: node {j} needs {j} inputs, got {len(items)}")
        for i, item in enumerate(items):
            op, _, src = item.partition("~")
            if op not in OPS:
                raise ValueError(f"arch string {arch!r}: unknown op {op!r}; known: {', '.join(OPS)}")
            if src != str(i):
                raise ValueError(f"arch string {arch!r}: node {j} input {i} reads '~{src}', expected '~{i}'")
            ops.append(op)
    return tuple(ops)


def to_string(ops: Arch) -> str:
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise ValueError(f"need {len(EDGES)} ops from {OPS}, got {ops!r}")
    groups, k = [], 0
    for j in range(1, 4):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


def to_index(ops: Arch) -> int:
    index = 0
    for op in ops:
        index = index * len(OPS) + OPS.index(op)
    return index


def from_index(index: int) -> Arch:
    if not 0 <= index < N_ARCHS:
        raise ValueError(f"index {index} outside 0..{N_ARCHS - 1}")
    ops = []
    for _ in EDGES:
        index, r = divmod(index, len(OPS))
        ops.append(OPS[r])
    return tuple(reversed(ops))


# ----------------------------------------------------------------------------- the network
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    def forward(self, x):
        return x * 0.0


OP_MODULES = {  # C channels in and out, stride 1
    "none": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, c, 1, 1),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, c, 3, 1),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


class Cell(nn.Module):
    """Node j = Σ_{i<j} op_ij(node i); the output is node 3."""

    def __init__(self, ops: Arch, c: int):
        super().__init__()
        self.edges = nn.ModuleList(OP_MODULES[op](c) for op in ops)

    def forward(self, x):
        nodes, k = [x], 0
        for j in range(1, 4):
            nodes.append(sum(self.edges[k + i](nodes[i]) for i in range(j)))
            k += j
        return nodes[-1]


class Reduction(nn.Module):
    """Residual block between stages: ReLU-Conv-BN stride 2, ReLU-Conv-BN; 2×2 avg-pool + 1×1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Network(nn.Module):
    """The standard NB201 macro network: 3×3 conv stem + BN; three stages of ``cells_per_stage`` cells
    (C, 2C, 4C channels) joined by :class:`Reduction` blocks; BN + ReLU, global average pooling,
    linear classifier. Returns ``(logits, None)`` like the other networks."""

    def __init__(self, ops: Arch, num_classes: int = 10, C: int = 16, cells_per_stage: int = 5,
                 in_channels: int = 3):
        super().__init__()
        to_string(ops)  # validates the ops
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers, c = [], C
        for stage in range(3):
            if stage:
                layers.append(Reduction(c, 2 * c))
                c *= 2
            layers += [Cell(ops, c) for _ in range(cells_per_stage)]
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor):
        out = self.head(self.layers(self.stem(x)))
        return self.classifier(out.mean((2, 3))), None

