"""Diffusion denoising (Hong, Carlini & Kurakin 2024, the poisoning paper's §6.1): add Gaussian noise of
σ (on the [0, 1] scale) to every image, then denoise it in one step with an off-the-shelf diffusion
model — the training images the search learns from and its held-out images alike.

One step (Carlini et al. 2023's denoised smoothing): the model works on [−1, 1], where the noise is 2σ;
take the timestep t whose noise-to-signal ratio √((1 − ᾱ_t)/ᾱ_t) is closest to 2σ, form
x_t = √ᾱ_t · (x + 2σ·ε), predict ε̂ = UNet(x_t, t) and return x̂ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, clipped
and rounded to uint8. The model is a ``diffusers`` ``UNet2DModel`` with its scheduler (for ᾱ), read from
``model``: a local folder (``unet/`` + ``scheduler/`` subfolders, or both configs at its root, as the
``google/ddpm-cifar10-32`` repository has them) or a hub id already in the local Hugging Face cache. No
weights ship with naspoison and nothing is downloaded; the model's image size and channels must match the
data's. The noise is drawn from a seeded generator.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field

from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison.sanitize.base import Sanitized, Sanitizer


class DiffusionDenoiseParams(StrictParams):
    model: str | None = Field(None, description="folder or hub id of a diffusers UNet2DModel + scheduler")
    sigma: float = Field(0.1, gt=0, le=1, description="noise std on the [0, 1] scale (the paper's 0.1)")
    batch_size: int = Field(256, gt=0)


def load_denoiser(model: str | None):
    """(UNet2DModel, ᾱ as a float64 array) from a folder or a cached hub id; clear errors otherwise."""
    if not model:
        raise ValueError("diffusion_denoise needs model: a folder or hub id of a diffusers UNet2DModel and its "
                         "scheduler (e.g. google/ddpm-cifar10-32, downloaded beforehand)")
    try:
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError as e:
        raise RuntimeError("diffusion_denoise needs diffusers: pip install 'naspoison[diffusion]'") from e
    root = Path(model).expanduser()
    local = root.is_dir()
    unet_sub = "unet" if local and (root / "unet").is_dir() else None
    sched_sub = "scheduler" if local and (root / "scheduler").is_dir() else None
    src = str(root) if local else model
    try:
        unet = UNet2DModel.from_pretrained(src, subfolder=unet_sub, local_files_only=True)
        sched = DDPMScheduler.from_pretrained(src, subfolder=sched_sub, local_files_only=True)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"diffusion_denoise: no UNet2DModel + scheduler at {model!r} "
                                f"({'folder' if local else 'not a folder; not in the Hugging Face cache'}): {e}") from None
    return unet, sched.alphas_cumprod.double().numpy()


def timestep_for(sigma: float, alphas_cumprod: np.ndarray) -> int:
    """The t whose √((1 − ᾱ_t)/ᾱ_t) is closest to 2σ (the noise level on the model's [−1, 1] scale)."""
    ratio = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    return int(np.argmin(np.abs(ratio - 2 * sigma)))


def denoise(x: np.ndarray, unet, alphas_cumprod: np.ndarray, sigma: float, seed: int, batch_size: int,
            device) -> np.ndarray:
    import torch

    t = timestep_for(sigma, alphas_cumprod)
    a = float(alphas_cumprod[t])
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            b = torch.from_numpy(x[i:i + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            noisy = b + 2 * sigma * torch.randn(b.shape, generator=gen)
            xt = (a ** 0.5 * noisy).to(device)
            eps = unet(xt, torch.full((len(b),), t, device=device)).sample
            x0 = (xt - (1 - a) ** 0.5 * eps) / a ** 0.5
            out.append(((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


class DiffusionDenoise(Sanitizer):
    name = "diffusion_denoise"
    title = "Diffusion denoising"
    Params = DiffusionDenoiseParams
    discards_labels = False

    @staticmethod
    def unavailable(params: DiffusionDenoiseParams) -> str | None:
        if params.model is None:
            return "this profile names no denoiser model (sanitize.diffusion_denoise.model)"
        return None

    def apply(self, data: ImageData, params: DiffusionDenoiseParams, seed: int, device="cpu",
              log: Callable[[str], None] | None = None, clean_labels: np.ndarray | None = None) -> Sanitized:
        log = log or (lambda m: None)
        unet, alphas = load_denoiser(params.model)
        h, w, c = data.shape
        cfg = unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)
        if (size not in (h, (h, w))) or cfg.in_channels != c:
            raise ValueError(f"denoiser {params.model!r} takes {cfg.in_channels}-channel {size} images; the data is "
                             f"{h}x{w}x{c}")
        unet = unet.to(device).eval()
        t = timestep_for(params.sigma, alphas)
        log(f"denoising {len(data.x_train)} + {len(data.x_test)} images at t = {t}")
        x_train = denoise(data.x_train, unet, alphas, params.sigma, seed, params.batch_size, device)
        x_test = denoise(data.x_test, unet, alphas, params.sigma, seed + 1, params.batch_size, device)
        change = np.abs(x_train.astype(np.float64) - data.x_train).mean() / 255.0
        return Sanitized(x_train=x_train, x_test=x_test, summary={
            "model": params.model, "sigma": params.sigma, "timestep": t, "alpha_bar": float(alphas[t]),
            "mean_abs_change_train": float(change)})
