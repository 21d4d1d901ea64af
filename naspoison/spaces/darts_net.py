"""The DARTS operations and networks built from the space of :mod:`naspoison.spaces.darts` (split from it so
that genotypes and the space's constants load without torch)."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from naspoison.spaces.darts import N_INPUTS, N_NODES, OP_NAMES, Genotype


# ----------------------------------------------------------------------------- operations
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated conv -> pointwise conv -> BN."""

    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked (non-dilated) DilConv blocks; only the first one strides."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, so no pixel is skipped."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        assert c_out % 2 == 0, "FactorizedReduce needs an even channel count"
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        if x.device.type == "cpu":
            # oneDNN's weight gradient of a strided 1x1 conv on channels_last input is wrong on CPU
            # (torch 2.14: differs run to run and can corrupt the heap); NCHW takes a correct kernel
            x = x.contiguous()
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # odd sizes: keep both halves the same shape
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


OpFactory = Callable[[int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda C, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}
assert tuple(OPS) == OP_NAMES


# ----------------------------------------------------------------------------- networks
def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples' paths with probability ``drop_prob``; rescale the kept ones."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def reduction_positions(layers: int) -> tuple[int, int]:
    """Cells that halve the resolution (and double the channels): at 1/3 and 2/3 of the depth."""
    return layers // 3, 2 * layers // 3


def edge_stride(reduction: bool, inp: int) -> int:
    """In a reduction cell only the edges leaving the two input states stride."""
    return 2 if reduction and inp < N_INPUTS else 1


def preprocess_inputs(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool, affine: bool) -> tuple[nn.Module, nn.Module]:
    """Bring both input states to ``c`` channels and one resolution (the older one may be 2x larger)."""
    pre0 = FactorizedReduce(c_prev_prev, c, affine) if reduction_prev else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine)
    return pre0, ReLUConvBN(c_prev, c, 1, 1, 0, affine)


class Cell(nn.Module):
    def __init__(self, pairs: Iterable[tuple[str, int]], concat: Iterable[int],
                 c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess_inputs(c_prev_prev, c_prev, c, reduction_prev, affine=True)
        pairs = list(pairs)
        self.inputs = [inp for _, inp in pairs]
        self.concat = list(concat)
        self.ops = nn.ModuleList(OPS[op](c, edge_stride(reduction, inp), True) for op, inp in pairs)
        self.multiplier = len(self.concat)

    def forward(self, s0, s1, drop_prob: float = 0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(N_NODES):
            h = 0
            for j in (2 * node, 2 * node + 1):
                out = self.ops[j](states[self.inputs[j]])
                if self.training and not isinstance(self.ops[j], nn.Identity):
                    out = drop_path(out, drop_prob)
                h = h + out
            states.append(h)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The DARTS CIFAR auxiliary classifier, made size-agnostic for small inputs (8x8 at 32 px)."""

    def __init__(self, c: int, num_classes: int, spatial: int):
        super().__init__()
        pool: list[nn.Module] = [nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)] if spatial >= 5 else []
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), *pool, nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """The DARTS evaluation network: stem, ``layers`` cells with reductions at 1/3 and 2/3 depth,
    optional auxiliary head after the second reduction, global pooling and a linear classifier.

    ``forward`` returns ``(logits, aux_logits or None)``; ``drop_path_prob`` is set by the trainer.
    """

    def __init__(self, genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10,
                 in_channels: int = 3, auxiliary: bool = True, image_size: int = 32, stem_multiplier: int = 3):
        super().__init__()
        self.drop_path_prob = 0.0
        self.aux_index = 2 * layers // 3
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev, spatial = False, image_size
        self.auxiliary_head = None
        for i in range(layers):
            reduction = i in reduction_positions(layers)
            if reduction:
                c_curr *= 2
                spatial = (spatial + 1) // 2
            pairs, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal, genotype.normal_concat)
            cell = Cell(pairs, concat, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.aux_index and auxiliary:
                self.auxiliary_head = AuxiliaryHead(c_p, num_classes, spatial)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    return sum(p.numel() for name, p in model.named_parameters()
               if not (exclude_auxiliary and name.startswith("auxiliary_head")))


class Logits(nn.Module):
    """An EvalNetwork seen as x -> logits (metrics take a plain classifier)."""

    def __init__(self, net: EvalNetwork):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]
