"""The NAS-Bench-201 macro network built from an arch of :mod:`naspoison.spaces.nb201` (split from it so that
the arch strings, their parsing and numbering load without torch)."""
from __future__ import annotations

import torch
from torch import nn

from naspoison.spaces.nb201 import Arch, to_string


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

