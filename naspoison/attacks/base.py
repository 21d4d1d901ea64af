"""What every poisoning attack shares: budget arithmetic, the poison record, and applying it."""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np

from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams


@dataclass
class AttackContext:
    """What an attack may need beyond the data: where to cache models it trains (the surrogate), the
    dataset's identity (part of those models' keys), the victim a NAS-aware attack targets, and a
    progress sink. Attacks that need none of it ignore it."""

    artifacts: Any = None                        # ArtifactCache or None (then nothing is cached)
    dataset_identity: dict = field(default_factory=dict)
    victim: Any = None                           # nas_gradient_canceling: a loaded victim (see stages.victim)
    log: Callable[[str], None] = lambda message: None


class NoParams(StrictParams):
    """An attack without parameters."""


class Attack:
    """A poisoning attack: the protocol every entry of ``ATTACKS`` subclasses. Every capability a caller
    may ask about is declared here with its default, so callers read it, never probe for it."""

    name: ClassVar[str]
    """The registry key and the name in suite.yaml and in keys."""
    title: ClassVar[str]
    """How tables name it."""
    changes: ClassVar[Literal["labels", "images"]]
    """What the poison replaces; label attacks against an algorithm that reads no labels are skipped."""
    Params: ClassVar[type[StrictParams]] = NoParams
    """Its parameters (profiles' ``attacks: {name: {...}}``); a poison key holds their ``model_dump()``."""
    targets_algorithm: ClassVar[bool] = False
    """True: one poisoned set per victim NAS algorithm (the suite resolves ``ctx.victim`` for ``poison``)."""

    @staticmethod
    def params_for_victim(params: dict, algorithm: str) -> dict:
        """The parameters as run against ``algorithm`` (``targets_algorithm`` attacks only): what the poison
        key holds. Default: unchanged."""
        return params

    def poison(self, data: ImageData, budget: float, params: StrictParams, rng: np.random.Generator,
               device="cpu", ctx: AttackContext | None = None) -> Poison:
        """Replace ``poison_count(budget, n)`` training samples; all randomness from ``rng``."""
        raise NotImplementedError


@dataclass
class Poison:
    """What an attack changed: the replaced ``indices`` (sorted) and their new labels and/or images.

    The length of the training set never changes: poisons *replace* samples.
    """

    indices: np.ndarray                 # int64 [k]
    labels: np.ndarray | None = None    # int64 [k]
    images: np.ndarray | None = None    # uint8 [k, H, W, C]
    summary: dict = field(default_factory=dict)

    def apply(self, data: ImageData) -> ImageData:
        y, x = data.y_train, data.x_train
        if self.labels is not None:
            y = y.copy()
            y[self.indices] = self.labels
        if self.images is not None:
            x = x.copy()
            x[self.indices] = self.images
        return replace(data, x_train=x, y_train=y)

    def to_bytes(self) -> bytes:
        arrays = {"indices": self.indices}
        if self.labels is not None:
            arrays["labels"] = self.labels
        if self.images is not None:
            arrays["images"] = self.images
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # plain arrays; loaded back with allow_pickle=False
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Poison:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return cls(z["indices"], z.get("labels"), z.get("images"))


def poison_count(budget: float, n: int) -> int:
    """p·n rounded half up; a budget that selects no sample is an error, not a silent no-op."""
    k = int(np.floor(budget * n + 0.5))
    if not 1 <= k <= n:
        raise ValueError(f"budget {budget} of {n} samples selects {k} samples; need 1..{n}")
    return k


def choose_indices(rng: np.random.Generator, budget: float, n: int) -> np.ndarray:
    return np.sort(rng.choice(n, size=poison_count(budget, n), replace=False)).astype(np.int64)
