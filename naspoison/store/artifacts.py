"""Large, recomputable artifacts (poisoned sets, weights) in a local diskcache outside git.

Values are raw bytes (npz or safetensors) only: diskcache stores ``bytes`` as-is, so nothing is
ever unpickled. Eviction is allowed here, because every artifact can be recomputed from its key.
"""
from __future__ import annotations

import os
from pathlib import Path

import diskcache

DEFAULT_SIZE_LIMIT = 20 * 2**30  # 20 GiB


def default_artifact_dir() -> Path:
    env = os.environ.get("NASPOISON_ARTIFACTS")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return base / "naspoison" / "artifacts"


class ArtifactCache:
    def __init__(self, directory: str | os.PathLike | None = None, size_limit: int | None = None):
        self.directory = Path(directory) if directory else default_artifact_dir()
        limit = size_limit or int(os.environ.get("NASPOISON_ARTIFACT_LIMIT", DEFAULT_SIZE_LIMIT))
        self._cache = diskcache.Cache(str(self.directory), size_limit=limit,
                                      eviction_policy="least-recently-used")

    def get(self, key: str) -> bytes | None:
        value = self._cache.get(key, default=None)
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"artifact {key} is not raw bytes; refusing to use it")
        return value

    def put(self, key: str, blob: bytes) -> None:
        if not isinstance(blob, (bytes, bytearray)):
            raise TypeError("artifacts are stored as raw bytes only")
        self._cache.set(key, bytes(blob))

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def volume(self) -> int:
        return self._cache.volume()

    def close(self) -> None:
        self._cache.close()


def state_to_bytes(state: dict, meta: dict | None = None) -> bytes:
    """A model's ``state_dict`` (plus a small JSON ``meta``) as npz bytes: plain arrays, no pickle."""
    import io
    import json

    import numpy as np

    arrays = {f"state/{k}": v.detach().cpu().numpy() for k, v in state.items()}
    arrays["meta"] = np.array(json.dumps(meta or {}, sort_keys=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def state_from_bytes(blob: bytes) -> tuple[dict, dict]:
    """Inverse of :func:`state_to_bytes`: (state_dict of CPU tensors, meta)."""
    import io
    import json

    import numpy as np
    import torch

    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        state = {k[len("state/"):]: torch.from_numpy(z[k].copy()) for k in z.files if k.startswith("state/")}
        return state, json.loads(str(z["meta"]))
