"""The protocol every sanitizer subclasses, and what it returns: the search data's replaced parts, as raw npz
bytes for the artifact cache."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams


@dataclass
class Sanitized:
    """New training labels (relabeling) and/or new training and held-out images (denoising)."""

    y_train: np.ndarray | None = None   # int64 [N]
    x_train: np.ndarray | None = None   # uint8 [N, H, W, C]
    x_test: np.ndarray | None = None    # uint8 [M, H, W, C]
    summary: dict = field(default_factory=dict)

    def apply(self, data: ImageData) -> ImageData:
        out = data
        for name in ("y_train", "x_train", "x_test"):
            new = getattr(self, name)
            if new is not None:
                if new.shape[0] != getattr(data, name).shape[0]:
                    raise ValueError(f"sanitized {name} has {new.shape[0]} rows, the data {getattr(data, name).shape[0]}")
                out = replace(out, **{name: new})
        if self.y_train is not None:  # k clusters may name more classes than the data had
            out = replace(out, num_classes=max(data.num_classes, int(self.y_train.max()) + 1))
        return out

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(self, k) for k in ("y_train", "x_train", "x_test") if getattr(self, k) is not None})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Sanitized:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return cls(**{k: z[k] for k in z.files})


class Sanitizer:
    """A poisoning countermeasure applied to a search's data before the search: the protocol every entry of
    ``SANITIZERS`` subclasses, its capabilities declared with their defaults."""

    name: ClassVar[str]
    """The registry key and the name in suite.yaml and in keys (a sanitize spec's ``defense`` field)."""
    title: ClassVar[str]
    """How tables name it."""
    Params: ClassVar[type[StrictParams]]
    """Its parameters (a profile's ``sanitize: {name: {...}}``; ``defended_search.defenses`` maps it to attacks)."""
    discards_labels: ClassVar[bool] = False
    """True: its output does not depend on the labels it is given, so label-flip rows share the clean cell."""

    @staticmethod
    def unavailable(params: StrictParams) -> str | None:
        """Why it cannot run with ``params`` on this install (a missing model), or None: a suite then has no
        rows for it, and says why, instead of failing every cell."""
        return None

    def apply(self, data: ImageData, params: StrictParams, seed: int, device="cpu",
              log: Callable[[str], None] | None = None, clean_labels: np.ndarray | None = None) -> Sanitized:
        """Sanitize the training (and held-out) set; ``clean_labels`` only to *score* it (e.g. purity)."""
        raise NotImplementedError
