from naspoison.store.artifacts import ArtifactCache, state_from_bytes, state_to_bytes
from naspoison.store.keys import canonical_json, content_key
from naspoison.store.results import CorruptRecord, Record, ResultStore, StoreError

__all__ = ["ArtifactCache", "CorruptRecord", "Record", "ResultStore", "StoreError", "canonical_json", "content_key", "state_from_bytes", "state_to_bytes"]
