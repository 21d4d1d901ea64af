"""Large, recomputable artifacts (poisoned sets, weights) in a local diskcache outside git.

Values are raw bytes (npz or safetensors) only: diskcache stores ``bytes`` as-is, so nothing is
ever unpickled. Eviction is allowed here, because every artifact can be recomputed from its key.

Integrity: each value is written with the sha256 of its bytes, and the cell that makes an artifact
keeps that digest in its record's provenance (``provenance.artifacts``). A load checks both — the
bytes against their own digest (truncation, disk damage) and, where the caller passes the producing
record's digest, against that (an artifact replaced by other, valid-looking bytes) — and a load that
fails either check, or whose bytes do not parse (``BadZipFile``), evicts the artifact and says so; the
caller then recomputes it. It is never used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import diskcache
import numpy as np

from naspoison._lazy import lazy

torch = lazy("torch", globals())

DEFAULT_SIZE_LIMIT = 20 * 2**30  # 20 GiB


def default_artifact_dir() -> Path:
    env = os.environ.get("NASPOISON_ARTIFACTS")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return base / "naspoison" / "artifacts"


_MAGIC = b"\x00naspoison-sha256\x00"  # value = magic + 64 hex digits + payload; older values are bare payloads
_recording = threading.local()


class ArtifactError(OSError):
    """The artifact cache cannot be opened or written (full disk, no permission): one clear line."""


def blob_digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _say(message: str) -> None:
    print(f"naspoison: {message}", file=sys.stderr, flush=True)


@contextmanager
def recording() -> Iterator[dict[str, str]]:
    """Collect {artifact key: digest} of every artifact written by this thread inside the block."""
    stack = _recording.__dict__.setdefault("stack", [])
    written: dict[str, str] = {}
    stack.append(written)
    try:
        yield written
    finally:
        stack.remove(written)


class ArtifactCache:
    def __init__(self, directory: str | os.PathLike | None = None, size_limit: int | None = None):
        self.directory = Path(directory) if directory else default_artifact_dir()
        limit = size_limit or int(os.environ.get("NASPOISON_ARTIFACT_LIMIT", DEFAULT_SIZE_LIMIT))
        try:
            self._cache = diskcache.Cache(str(self.directory), size_limit=limit,
                                          eviction_policy="least-recently-used")
        except Exception as e:  # noqa: BLE001 - sqlite3.OperationalError, OSError: a full disk, a file, no access
            raise ArtifactError(f"artifact cache {self.directory} cannot be opened ({type(e).__name__}: {e}); "
                                "free space or point --artifacts / $NASPOISON_ARTIFACTS elsewhere") from None
        self._warned: set[str] = set()

    def get(self, key: str, expect: str | None = None, log: Callable[[str], None] | None = None) -> bytes | None:
        """The artifact's bytes, or None when absent or failing a check (then it is evicted and ``log`` told why).
        ``expect``: the digest the producing record holds."""
        value = self._cache.get(key, default=None)
        if value is None:
            return None
        if not isinstance(value, bytes):
            return self.evict(key, "is not raw bytes", log)
        if value.startswith(_MAGIC):
            stored, payload = value[len(_MAGIC):len(_MAGIC) + 64].decode("ascii", "replace"), value[len(_MAGIC) + 64:]
            if blob_digest(payload) != stored:
                return self.evict(key, "does not match the digest written with it (truncated or damaged)", log)
        else:
            stored, payload = blob_digest(value), value
        if expect is not None and stored != expect:
            return self.evict(key, "is not the artifact its record was made with (digest differs)", log)
        return payload

    def load(self, key: str, parse: Callable[[bytes], object], expect: str | None = None,
             log: Callable[[str], None] | None = None):
        """``parse(bytes)`` of a checked artifact; None (evicted, said so) when absent, failing a check or unparsable."""
        blob = self.get(key, expect, log)
        if blob is None:
            return None
        try:
            return parse(blob)
        except Exception as e:  # noqa: BLE001 - BadZipFile, ValueError, KeyError, EOFError...: unusable either way
            return self.evict(key, f"cannot be read ({type(e).__name__}: {e})", log)

    def evict(self, key: str, why: str, log: Callable[[str], None] | None = None) -> None:
        msg = f"artifact {key} {why}: evicted, recomputing it"
        (log or _say)(msg)
        try:
            self._cache.delete(key)
        except Exception:  # noqa: BLE001 - it stays unusable: the next load fails the same check
            pass
        return None

    def unverified(self, key: str, log: Callable[[str], None] | None = None) -> None:
        """Say once per artifact that its record predates artifact digests (checked for damage only)."""
        if key not in self._warned:
            self._warned.add(key)
            (log or _say)(f"artifact {key}: its record predates artifact digests; checked for damage only")

    def put(self, key: str, blob: bytes) -> str:
        """Store ``blob`` with its digest; returns the digest (also given to every active :func:`recording`)."""
        if not isinstance(blob, (bytes, bytearray)):
            raise TypeError("artifacts are stored as raw bytes only")
        digest = blob_digest(bytes(blob))
        try:
            self._cache.set(key, _MAGIC + digest.encode("ascii") + bytes(blob))
        except Exception as e:  # noqa: BLE001 - sqlite3.OperationalError "database or disk is full", OSError
            raise ArtifactError(f"artifact cache {self.directory}: cannot write {key} ({type(e).__name__}: {e}); "
                                "free space or point --artifacts elsewhere") from None
        for written in getattr(_recording, "stack", []):
            written[key] = digest
        return digest

    def raw(self, key: str):
        """The stored value as it is on disk (tests and diagnostics)."""
        return self._cache.get(key, default=None)

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def volume(self) -> int:
        return self._cache.volume()

    def close(self) -> None:
        self._cache.close()


def state_to_bytes(state: dict, meta: dict | None = None) -> bytes:
    """A model's ``state_dict`` (plus a small JSON ``meta``) as npz bytes: plain arrays, no pickle."""
    arrays = {f"state/{k}": v.detach().cpu().numpy() for k, v in state.items()}
    arrays["meta"] = np.array(json.dumps(meta or {}, sort_keys=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def state_from_bytes(blob: bytes) -> tuple[dict, dict]:
    """Inverse of :func:`state_to_bytes`: (state_dict of CPU tensors, meta)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        state = {k[len("state/"):]: torch.from_numpy(z[k].copy()) for k in z.files if k.startswith("state/")}
        return state, json.loads(str(z["meta"]))
