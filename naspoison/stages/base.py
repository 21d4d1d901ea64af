"""What every stage is: a name, a version, the upstream specs it reads and one ``compute(spec, inputs, ctx)``;
and the pieces every spec builder shares (SPEC §3-4).

A spec is ``{stage, version, params, upstream}``; its sha256 is the cell's key. ``version`` is bumped when a
stage's semantics change, so old results stop matching instead of being reused. Machine-specific settings
(dataset root, download flag) are not part of any key.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from naspoison.data.datasets import content_identity
from naspoison.store import ArtifactCache, ResultStore, content_key


def _quiet(message: str) -> None:
    pass


@dataclass
class StageContext:
    """Where a cell computes: the full dataset spec it loads (with its root: for a search, the dataset the
    search reads, which an out-of-distribution row takes from another source), the artifact cache, the device,
    the result store (upstream records, a NAS-aware attack's victim) and a progress log."""
    dataset: dict
    artifacts: ArtifactCache | None = None
    device: str = "cpu"
    store: ResultStore | None = None
    log: Callable[[str], None] = field(default=_quiet)


@dataclass(frozen=True)
class Stage:
    """One pipeline step. ``compute(spec, inputs, ctx)`` returns the cell's result (JSON); ``inputs`` maps each
    name of ``inputs`` (the upstream stages it reads) to that upstream cell's spec, or None where the cell has
    none (a clean search has no poison). Artifacts it makes go to ``ctx.artifacts`` under keys holding its own
    key. ``version`` is part of every key of the stage: bump it when the computation's semantics change."""
    name: str
    version: str
    compute: Callable[[dict, dict, StageContext], dict]
    inputs: tuple[str, ...] = ()


def _spec(stage: str, version: str, params: dict, upstream: dict) -> dict:
    return {"stage": stage, "version": version, "params": params, "upstream": upstream}


def added_later(fields: dict, **later) -> dict:
    """``fields`` plus each of ``later`` that is set (not None).

    The rule for a field added to a stage after it first shipped: it enters the spec only when it is set, so
    every cell that does not use it keeps the key it had before the field existed (the committed results stay
    valid without a version bump). A field that must be in every key is a version bump instead."""
    return fields | {k: v for k, v in later.items() if v is not None}


def key_of(spec: dict | None) -> str | None:
    """An upstream reference: the upstream cell's key, None where there is no such cell."""
    return content_key(spec) if spec else None


def dataset_identity(dataset: dict) -> dict:
    """The part of a dataset spec that decides the data (not where it lives on this machine); a user's .npz by
    the digest of its arrays, not its path (a file replaced in place must not reuse old results)."""
    keep = ("name", "train_size", "test_size", "subset_seed")
    resize = dataset.get("resize")
    return added_later({k: dataset[k] for k in keep} | content_identity(dataset),
                       resize=list(resize) if resize else None)
