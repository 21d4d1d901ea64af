"""Cluster-based relabeling (the poisoning paper's §6.1): features of every training image from a
pretrained network, KMeans with k clusters, and every image gets its cluster's label. The original
(possibly flipped) labels are discarded, so any label-flip attack is undone — and the true labels too.

Choices, stated once:
* Features: ``resnet152`` — torchvision's ResNet-152 with ImageNet weights (IMAGENET1K_V1) read from
  ``weights`` (a file) or the torch hub cache (``$TORCH_HOME/hub/checkpoints/resnet152-394f9c45.pth``); never
  downloaded here, a clear error naming the file when absent. Images are resized to 224×224 (bilinear),
  grey repeated to three channels, ImageNet-normalised; the feature is the 2048-d pooled output before
  the classifier ("final-layer features"). ``pixels_pca`` — raw pixels projected on their first
  ``pca_components`` principal components: **for tests only**, labelled so in every summary.
* Clustering: scikit-learn KMeans, k = ``clusters`` (10), ``n_init`` 10, seeded. Cluster ids are renumbered
  by size (largest first, ties by smallest member index) so the labels do not depend on KMeans's order.
* The summary reports purity (the fraction of images whose cluster's majority clean label is their own),
  measured against the clean labels the audit knows; the search never sees them.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams
from naspoison.sanitize.base import Sanitized, Sanitizer

RESNET152_FILE = "resnet152-394f9c45.pth"  # torchvision's IMAGENET1K_V1 file name
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ClusterRelabelParams(StrictParams):
    features: Literal["resnet152", "pixels_pca"] = "resnet152"
    weights: str | None = Field(None, description="ResNet-152 ImageNet weights file (default: the torch hub cache)")
    clusters: int = Field(10, gt=1)
    pca_components: int = Field(50, gt=0, description="pixels_pca only")
    batch_size: int = Field(128, gt=0)


def resnet152_weights_path(weights: str | None) -> Path:
    if weights:
        return Path(weights).expanduser()
    hub = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"))
    return hub.expanduser() / "hub" / "checkpoints" / RESNET152_FILE


def resnet152_features(x: np.ndarray, weights: str | None, batch_size: int, device) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    import torchvision

    path = resnet152_weights_path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"cluster_relabel needs ResNet-152 ImageNet weights at {path} (torchvision's {RESNET152_FILE}); "
            "put the file there or set weights: PATH in the profile's sanitize.cluster_relabel")
    net = torchvision.models.resnet152()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.fc = torch.nn.Identity()
    net = net.to(device).eval()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            b = torch.from_numpy(x[i:i + batch_size]).to(device).permute(0, 3, 1, 2).float() / 255.0
            b = b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b
            b = F.interpolate(b, size=(224, 224), mode="bilinear", align_corners=False)
            out.append(net((b - mean) / std).float().cpu().numpy())
    return np.concatenate(out)


def pixel_pca_features(x: np.ndarray, components: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1).astype(np.float64) / 255.0
    return PCA(n_components=min(components, *flat.shape), random_state=seed).fit_transform(flat)


def renumber_by_size(assign: np.ndarray, k: int) -> np.ndarray:
    """Cluster ids ordered by size (largest first; ties: the cluster whose first member comes first)."""
    sizes = np.bincount(assign, minlength=k)
    first = np.array([np.flatnonzero(assign == c)[0] if sizes[c] else len(assign) for c in range(k)])
    order = sorted(range(k), key=lambda c: (-sizes[c], first[c]))
    new_id = np.empty(k, dtype=np.int64)
    new_id[order] = np.arange(k)
    return new_id[assign]


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(truth))


class ClusterRelabel(Sanitizer):
    name = "cluster_relabel"
    title = "Cluster-based relabeling"
    Params = ClusterRelabelParams
    discards_labels = True

    def apply(self, data: ImageData, params: ClusterRelabelParams, seed: int, device="cpu",
              log: Callable[[str], None] | None = None, clean_labels: np.ndarray | None = None) -> Sanitized:
        from sklearn.cluster import KMeans

        log = log or (lambda m: None)
        if params.features == "resnet152":
            log(f"ResNet-152 features of {len(data.x_train)} images")
            feats = resnet152_features(data.x_train, params.weights, params.batch_size, device)
        else:
            feats = pixel_pca_features(data.x_train, params.pca_components, seed)
        km = KMeans(n_clusters=params.clusters, n_init=10, random_state=seed).fit(feats)
        labels = renumber_by_size(km.labels_.astype(np.int64), params.clusters)
        summary = {"features": params.features + (" (test backend, not a defense)" if params.features == "pixels_pca" else ""),
                   "clusters": params.clusters, "cluster_sizes": np.bincount(labels, minlength=params.clusters).tolist()}
        if clean_labels is not None:
            summary["purity_vs_clean_labels"] = purity(labels, clean_labels)
        return Sanitized(y_train=labels, summary=summary)
