from naspoison.store.artifacts import ArtifactCache
from naspoison.store.keys import canonical_json, content_key
from naspoison.store.results import CorruptRecord, Record, ResultStore

__all__ = ["ArtifactCache", "CorruptRecord", "Record", "ResultStore", "canonical_json", "content_key"]
