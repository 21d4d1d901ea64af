"""Content keys: sha256 of the canonical JSON of a cell's spec (SPEC §4)."""
from __future__ import annotations

import hashlib
import json
import math
from math import isfinite
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


def _plain(obj: Any) -> bool:
    """True when ``obj`` is plainly valid (exact JSON types, finite floats); False sends it to :func:`_check`,
    which names the problem. No paths are built here: checking every stored record (``bench --check``) spends
    most of its time in this walk."""
    t = type(obj)
    if t is float:
        return isfinite(obj)
    if t is str or t is int or t is bool or obj is None:
        return True
    if t is dict:
        return all(type(k) is str and _plain(v) for k, v in obj.items())
    if t is list or t is tuple:
        for v in obj:  # the scalars inline: records are mostly long lists of floats (curves)
            tv = type(v)
            if tv is float:
                if not isfinite(v):
                    return False
            elif not (tv is str or tv is int or tv is bool or v is None or _plain(v)):
                return False
        return True
    return False


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, shortest float repr (Python's repr), NaN/inf rejected."""
    if not _plain(obj):
        _check(obj)
    return _dumps(obj)


def content_key(spec: dict) -> str:
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()


def parsed_content_key(obj: dict) -> str:
    """:func:`content_key` of data fresh from ``json.loads`` (string keys, JSON types only): the one thing such
    data can hold that keys refuse, NaN or inf, makes ``allow_nan=False`` fail, so the validating walk runs
    only then, to name it. Reading every record (``bench --check``, ``--plan``) spent most of its time there."""
    try:
        text = _dumps(obj)
    except ValueError:
        _check(obj)  # names the non-finite float
        raise
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
