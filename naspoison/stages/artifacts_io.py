"""Reading and writing the artifacts cells leave (poisoned sets, weights, supernets): their keys, and loads
checked against the digest the producing cell's record holds (see naspoison.store.artifacts)."""
from __future__ import annotations

from naspoison.store import ArtifactCache, Record, ResultStore, content_key, state_to_bytes


def weights_key(train: dict) -> str:
    return "weights/" + content_key(train)


def supernet_key(search_key: str) -> str:
    return "supernet/" + search_key


def backdoor_key(spec: dict) -> str:
    return "backdoor/" + content_key(spec)


def weights_blob(model) -> bytes:
    return state_to_bytes(model.state_dict())


def record_of(store: ResultStore | None, spec: dict) -> Record | None:
    """The stored record of cell ``spec`` (None without a store or before it is computed)."""
    return store.get(spec["stage"], content_key(spec)) if store is not None else None


def load_artifact(artifacts: ArtifactCache | None, key: str, parse, record: Record | None, log=None):
    """An artifact checked against the digest its producing ``record`` holds (see store.artifacts); None when it
    must be recomputed. A record written before artifact digests existed: checked for damage only, said once."""
    if artifacts is None:
        return None
    expect = (record.provenance.get("artifacts") or {}).get(key) if record is not None else None
    if record is not None and expect is None:
        artifacts.unverified(key, log)
    return artifacts.load(key, parse, expect, log)


def recomputed(artifacts: ArtifactCache | None, key: str, blob: bytes, record: Record | None, log=None) -> None:
    """Keep a recomputed artifact; say so if it is not bit-identical to the one its record was made with."""
    if artifacts is not None:
        note_drift(key, artifacts.put(key, blob), record, log)


def note_drift(key: str, digest: str | None, record: Record | None, log=None) -> None:
    expect = (record.provenance.get("artifacts") or {}).get(key) if record is not None else None
    if expect is not None and digest != expect:
        (log or (lambda m: None))(f"artifact {key}: the recomputation differs from the one its record was made "
                                  "with (not bit-reproducible here); using the recomputation")
