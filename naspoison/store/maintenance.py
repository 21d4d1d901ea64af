"""Store upkeep: verify the records' digests, merge other stores' results, and collect garbage (temporary files,
stale locks, failures of cells since finished, checkpoints of stored cells). Results are never deleted.
Torch-free (``naspoison verify``/``merge``/``gc`` start fast)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from naspoison.run import checkpoint_keys as checkpoint
from naspoison.store.artifacts import ArtifactCache
from naspoison.store.results import CorruptRecord, ResultStore, StoreError
from naspoison.store.timings import same_result


@dataclass
class Verified:
    files: int = 0
    corrupt: list[str] = field(default_factory=list)  # what is wrong with each corrupt file
    legacy: int = 0  # written before record digests: their provenance is not covered

    @property
    def ok(self) -> bool:
        return self.files > 0 and not self.corrupt


def verify(store: ResultStore) -> Verified:
    """Re-hash every result file of ``store``."""
    out = Verified()
    for path in store.iter_files():
        out.files += 1
        try:
            out.legacy += not store.load_file(path).provenance_covered
        except CorruptRecord as e:
            out.corrupt.append(str(e))
    return out


@dataclass
class Merged:
    added: int = 0
    same: int = 0
    conflicts: list[str] = field(default_factory=list)  # kept ours
    corrupt: list[str] = field(default_factory=list)    # skipped

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.corrupt


def merge(dest: ResultStore, sources: Iterable[str | Path]) -> Merged:
    """Union of result files from other stores into ``dest``; a key present in both must hold the same result
    (timings are provenance, not a conflict). A conflict or corrupt file keeps ours and is listed."""
    out = Merged()
    for src in sources:
        s = ResultStore(src, read_only=True)
        if not s.root.is_dir():
            raise StoreError(f"merge source {src} is not a directory")
        if s.root.resolve() == dest.root.resolve():
            raise StoreError(f"merge source {src} is the store itself")
        for path in s.iter_files():
            try:
                rec = s.load_file(path)
            except CorruptRecord as e:
                out.corrupt.append(str(e))
                continue
            try:
                mine = dest.get(rec.stage, rec.key)
            except CorruptRecord as e:  # never overwritten: the user decides (verify, then remove it)
                out.conflicts.append(f"{rec.stage}/{rec.key}: ours is corrupt, not replaced ({e}); run `naspoison verify`")
                continue
            if mine is None:
                dest.put(rec.spec, rec.result, rec.provenance)
                out.added += 1
            elif same_result(mine.result, rec.result):
                out.same += 1
            else:
                out.conflicts.append(f"{rec.stage}/{rec.key}: {path} differs from {dest.path(rec.stage, rec.key)}")
    return out


@dataclass
class GcResult:
    removed: list[tuple[str, str]] = field(default_factory=list)  # (what, path or checkpoint key), in order
    unreferenced: list[Path] = field(default_factory=list)         # results no given key names (kept)


def gc(store: ResultStore, artifacts: str | Path | None = None, dry_run: bool = False,
       referenced: set[str] | None = None) -> GcResult:
    """Remove (``dry_run``: only list) leftovers: temporary files, stale locks, failures of cells now done,
    unreadable failure files, and in ``artifacts`` the checkpoints of cells already stored. With ``referenced``
    (cell keys, e.g. every profile's of a suite), also list the results outside it; results are never removed."""
    root = store.root
    leftovers = list(root.glob("*/.tmp-*")) + list((root / ".failures").glob(".tmp-*"))
    failures = store.failures()
    done = [root / ".failures" / f"{f['key']}.json" for f in failures
            if f["spec"] is not None and store.has(f["spec"].get("stage", ""), f["key"])]
    damaged = [Path(f["path"]) for f in failures if f["spec"] is None]  # e.g. a full disk mid-write
    out = GcResult()
    for label, paths in (("temporary file", leftovers), ("stale lock", store.stale_locks()),
                         ("failure of a finished cell", done), ("unreadable failure file", damaged)):
        for p in paths:
            out.removed.append((label, str(p)))
            if not dry_run:
                p.unlink(missing_ok=True)
    _gc_checkpoints(store, artifacts, dry_run, out)
    if referenced is not None:
        out.unreferenced = [p for p in store.iter_files() if p.stem not in referenced]
    return out


def _gc_checkpoints(store: ResultStore, artifacts: str | Path | None, dry_run: bool, out: GcResult) -> None:
    """In-cell checkpoints of cells already stored (killed between storing and removing them)."""
    cache = ArtifactCache(artifacts)
    try:
        for k in checkpoint.orphans(cache, store):
            out.removed.append(("checkpoint of a stored cell", k))
            if not dry_run:
                checkpoint.delete(cache, k)
    finally:
        cache.close()
