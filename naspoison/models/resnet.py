"""ResNet-18 for small images (He et al. 2016, in the CIFAR form used by the poisoning literature):
a 3×3 stride-1 stem without max-pooling, four stages of two basic blocks (64·w, 128·w, 256·w,
512·w channels; stride 2 from the second stage on, 1×1 conv + BN shortcut where the shape
changes), global average pooling and one linear layer. 11,173,962 parameters at width 64 on
CIFAR-10.

``forward`` returns ``(logits, None)``, the same pair as the DARTS evaluation network, so one
training loop and one attack code path serve both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers.append(nn.Sequential(BasicBlock(c, c_out, 1 if i == 0 else 2), BasicBlock(c_out, c_out, 1)))
            c = c_out
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c, num_classes)
        self.drop_path_prob = 0.0  # read by the shared training loop; ResNet has no drop-path

    def forward(self, x: torch.Tensor):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1)), None
