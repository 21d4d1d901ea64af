"""Timings are provenance, not results (issue 24): a wall time differs on every run, so a result holding one
makes every independent recomputation a conflict. A field named ``seconds`` or ``*_seconds`` anywhere in a
result is moved to the record's provenance under its JSON path, e.g. ``rounds[3].seconds``."""
from __future__ import annotations

from typing import Any

from naspoison.store.keys import canonical_json

# facts about one run rather than its result: whether an upstream artifact (e.g. NAS-GC's victim weights) had to be
# recomputed depends on the artifact cache of the machine, so a recomputation elsewhere would differ only there
RUN_FACTS = frozenset({"recomputed", "recomputed_test_acc"})


def is_timing(name: str) -> bool:
    return name == "seconds" or name.endswith("_seconds") or name in RUN_FACTS


def split_timings(result: Any, at: str = "") -> tuple[Any, dict[str, float]]:
    """(the result without timing fields, {path: seconds})."""
    timings: dict[str, float] = {}

    def walk(obj, path):
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                p = f"{path}.{k}" if path else k
                if is_timing(k) and (v is None or isinstance(v, (int, float))):
                    timings[p] = v
                else:
                    out[k] = walk(v, p)
            return out
        if isinstance(obj, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        return obj

    return walk(result, at), timings


def same_result(a: Any, b: Any) -> bool:
    """Equal up to timing fields (records written before timings moved still hold them)."""
    return canonical_json(split_timings(a)[0]) == canonical_json(split_timings(b)[0])
