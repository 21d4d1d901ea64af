"""Training data resident on the device, augmented on the device (crop+pad, flip, cutout).

All ops are batched tensor ops: no per-sample Python loop, no host round trip per step.
"""
from __future__ import annotations

import numpy as np
from naspoison._lazy import lazy

torch = lazy("torch", globals())


def nchw(x: torch.Tensor) -> torch.Tensor:
    """A copy with plain NCHW strides. ``.contiguous()`` is not enough: a 1-channel tensor permuted from NHWC
    counts as contiguous yet keeps channels-last strides, and with those torch 2.14's CPU convolution
    backward corrupts the heap at one thread (seen on 8x8 digits in a ResNet-18)."""
    return x.clone(memory_format=torch.contiguous_format)


class DeviceImages:
    """uint8 [N, H, W, C] images and labels moved once to ``device``, normalised per channel."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device, mean: np.ndarray, std: np.ndarray):
        self.x = nchw(torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2))  # uint8 NCHW
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def normalise(self, xb_uint8: torch.Tensor) -> torch.Tensor:
        return (xb_uint8.float().div_(255.0) - self.mean) / self.std


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 [N,H,W,C] images on the [0,1] scale."""
    xf = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return xf.mean(0), np.maximum(xf.std(0), 1e-3)


def augment(x: torch.Tensor, gen: torch.Generator, padding: int, flip: bool) -> torch.Tensor:
    """Random crop of a zero-padded uint8 batch [B,C,H,W] (torchvision RandomCrop semantics) and a
    random horizontal flip, both drawn per sample from ``gen``."""
    b, _, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if padding > 0:
        x = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen, device=dev)
        ox = torch.randint(0, 2 * padding + 1, (b, 1), generator=gen, device=dev)
        rows, cols = rows + oy, cols + ox
    if flip:
        flipped = torch.rand(b, 1, generator=gen, device=dev) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None]
    # gather [B, H, W, C] then back to channels-first
    out = x.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return nchw(out.permute(0, 3, 1, 2))


def cutout(x: torch.Tensor, gen: torch.Generator, length: int) -> torch.Tensor:
    """Zero a ``length``-sided square per sample, centred uniformly in the image and clipped at its
    border (DeVries & Taylor 2017; applied after normalisation, as the DARTS recipe does)."""
    if length <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b, 1, 1), generator=gen, device=dev)
    cx = torch.randint(0, w, (b, 1, 1), generator=gen, device=dev)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    half = length // 2
    inside = (ys >= cy - half) & (ys < cy + length - half) & (xs >= cx - half) & (xs < cx + length - half)
    return x * (~inside).unsqueeze(1).to(x.dtype)
