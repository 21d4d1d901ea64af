"""Checkpoint housekeeping without torch (``naspoison gc`` must start fast): which artifact keys are in-cell
checkpoints and which of them belong to cells already stored."""
from __future__ import annotations

PREFIX = "ckpt/"  # checkpoint keys: ckpt/<stage>/<cell key>/<loop index>


def keys(artifacts) -> list[str]:
    """Every checkpoint key in an artifact cache."""
    return [k for k in artifacts._cache.iterkeys() if isinstance(k, str) and k.startswith(PREFIX)]


def delete(artifacts, key: str) -> None:
    artifacts._cache.delete(key)


def orphans(artifacts, store) -> list[str]:
    """Checkpoints of cells that are already stored (a kill between storing and removing them)."""
    out = []
    for k in keys(artifacts):
        parts = k[len(PREFIX):].split("/")
        if len(parts) == 3 and store.has(parts[0], parts[1]):
            out.append(k)
    return out
