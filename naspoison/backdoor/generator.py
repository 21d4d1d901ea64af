"""The input-aware trigger generator of Evas (appendix Table 7; Nguyen & Tran 2020).

Two encoder–decoders of the same shape: one gives a 1-channel mask m(x), the other a pattern p(x)
with the image's channels; the triggered image is x' = (1 − m(x))⊙x + m(x)⊙p(x) on the [0, 1]
pixel scale, so x' stays in [0, 1] (a convex combination of two images in [0, 1]).

Encoder: 3 blocks of (ConvBNReLU 3×3, ConvBNReLU 3×3, 2×2 max-pool) with ``channels``, 2·, 4·
channels; a middle ConvBNReLU; decoder: 3 blocks of (2× upsample, ConvBNReLU 3×3, ConvBNReLU 3×3)
halving the channels, the very last conv a ConvBN (no ReLU) to the output channels. Table 7 does
not give widths or the upsampling mode: ``channels`` = 32 (the input-aware attack's CIFAR
generator) and nearest-neighbour upsampling are our choices. Image sides must be divisible by 8.

Variants (the references differ; SPEC §6):

* ``vinai`` — the original input-aware attack: the generator reads the *normalised* image; its
  network ends in tanh(raw)/2 + 0.5 and the mask thresholds that output with (tanh(20·u − 10) + 1)/2
  (``Generator.forward`` then ``Generator.threshold`` in its networks/models.py), so
  mask = (tanh(20·(tanh(raw)/2 + 0.5) − 10) + 1)/2 = (tanh(10·tanh(raw)) + 1)/2 — the same function
  as trojanzoo's; pattern = (tanh(raw) + 1)/2; diversity between source images and between patterns
  (masks in the mask stage) as per-sample RMS distances (its MSE-then-sqrt), ε 1e-7.
* ``trojanzoo`` — what Evas ran: the generator reads the [0, 1] image,
  mask = (tanh(10·tanh(raw)) + 1)/2, pattern = (tanh(raw) + 1)/2, diversity measured between
  triggered images and between patterns (``InputAwareDynamic.attack``) and, in the mask stage,
  between source images and between masks; per-sample L2 norms, ε 1e-5.

(The input-aware code divides tanh by 2 + 1e-7 to keep values strictly inside (0, 1); that changes
nothing measurable and is not done here.)
"""
from __future__ import annotations


import torch
from torch import nn

from naspoison.backdoor.variants import VARIANTS



def conv_bn(c_in: int, c_out: int, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class EncoderDecoder(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, channels: int = 32, depth: int = 3):
        enc, c_in, c = [], in_channels, channels
        for _ in range(depth):
            enc += [conv_bn(c_in, c), conv_bn(c, c), nn.MaxPool2d(2)]
            c_in, c = c, 2 * c
        c = c_in  # widest encoder width (4·channels at depth 3)
        dec = [conv_bn(c, c)]
        for step in range(depth):
            last = step == depth - 1
            c_out = out_channels if last else c // 2
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), conv_bn(c, c), conv_bn(c, c_out, relu=not last)]
            c = c_out
        super().__init__(*enc, *dec)




class TriggerGenerator(nn.Module):
    """Mask and pattern generators. Inputs and outputs are images on the [0, 1] scale, NCHW;
    ``mean``/``std`` (per channel) are only used by variants that read normalised images."""

    def __init__(self, in_channels: int, variant: str = "trojanzoo", channels: int = 32,
                 mean=None, std=None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown trigger variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.mask_net = EncoderDecoder(in_channels, 1, channels)
        self.pattern_net = EncoderDecoder(in_channels, in_channels, channels)
        mean = torch.zeros(in_channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(in_channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1).float())
        self.register_buffer("std", std.view(1, -1, 1, 1).float())

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"the trigger generator needs image sides divisible by 8, got {tuple(x.shape[-2:])}")
        return (x - self.mean) / self.std if self.variant.normalised_input else x

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.variant.squash_mask(self.mask_net(self._input(x)))

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        return self.variant.squash_pattern(self.pattern_net(self._input(x)))

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """x' = (1 − m)⊙x + m⊙p with m, p generated from ``source`` (default ``x``; another image
        gives the cross trigger of the input-aware attack)."""
        src = x if source is None else source
        m = self.mask(src)
        return (1 - m) * x + m * self.pattern(src)
