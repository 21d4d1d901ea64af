"""Content keys: sha256 of the canonical JSON of a cell's spec (SPEC §4)."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def _check(obj: Any, path: str = "$") -> None:
    """Reject anything canonical JSON cannot carry exactly (NaN, inf, tuples are fine as lists)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite float at {path}: keys must not contain NaN or inf")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"non-string key {k!r} at {path}")
            _check(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check(v, f"{path}[{i}]")
    elif not (obj is None or isinstance(obj, (str, int, float, bool))):
        raise TypeError(f"{type(obj).__name__} at {path} is not JSON data")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, shortest float repr (Python's repr), NaN/inf rejected."""
    _check(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def content_key(spec: dict) -> str:
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
