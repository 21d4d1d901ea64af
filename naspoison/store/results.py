"""The results store (SPEC §4): one JSON file per cell, named by its content key.

* ``cache/<stage>/<key>.json`` holds ``{key, spec, result, result_digest, record_digest, provenance}``; the
  key is the sha256 of the canonical spec and is re-checked on every read, as are the result's digest and
  the record digest (spec, result and provenance together). Records written before the record digest
  existed have only the result digest: they still verify, and ``verify`` counts them (provenance uncovered).
  These are plain hashes: they catch accidental and careless edits, not a forger, who can recompute them;
  against a forged result the defence is recomputing it (``verify --recompute``).
* Writes go to a temporary file in the same folder, are fsynced and then *linked* into place,
  which fails if the name exists: a result is never replaced, so two workers, a ``kill -9`` or a
  full disk can at worst leave a stray temporary file, never a half-written or changed result.
* Failures live apart (``cache/.failures``), locks in ``cache/.locks``; neither is committed.
* Opened with ``read_only=True`` (report, --check, verify) the store refuses every write.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from naspoison.store.keys import content_key, parsed_content_key
from naspoison.store.timings import same_result

LOCK_STALE_SECONDS = 300      # a lock from another host not refreshed for this long is abandoned
LOCK_HEARTBEAT_SECONDS = 60


class CorruptRecord(Exception):
    """A result file whose content does not match its name or its digest."""


class ReadOnlyStore(Exception):
    pass


class StoreError(Exception):
    """A store path that cannot be a store (a file, an unreadable folder): bad input, one clear line."""


@dataclass(frozen=True)
class Record:
    key: str
    spec: dict
    result: dict
    provenance: dict
    provenance_covered: bool = True  # False: written before record digests, only the result is covered

    @property
    def stage(self) -> str:
        return self.spec["stage"]


def _digest(result: dict, key=content_key) -> str:
    return key({"result": result})


def _record_digest(spec: dict, result: dict, provenance: dict, key=content_key) -> str:
    return key({"spec": spec, "result": result, "provenance": provenance})


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultStore:
    def __init__(self, root: str | os.PathLike, read_only: bool = False):
        self.root = Path(root)
        self.read_only = read_only
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store {self.root} is a file, not a folder (mistyped --store?)")
        if not read_only:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"store {self.root} cannot be created ({e.strerror or e})") from None

    # ------------------------------------------------------------------ paths
    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(f"store {self.root} is open read-only")

    # ------------------------------------------------------------------ reading
    @staticmethod
    def load_file(path: Path) -> Record:
        """Parse and verify one result file; raise :class:`CorruptRecord` on any mismatch."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptRecord(f"{path}: unreadable ({e})") from None
        except RecursionError:
            raise CorruptRecord(f"{path}: nested too deeply to be a result record") from None
        if not isinstance(raw, dict) or not {"key", "spec", "result", "result_digest"} <= set(raw):
            raise CorruptRecord(f"{path}: not a result record")
        provenance = raw.get("provenance", {})
        try:
            key = parsed_content_key(raw["spec"])
            digest = _digest(raw["result"], parsed_content_key)
            whole = (_record_digest(raw["spec"], raw["result"], provenance, parsed_content_key)
                     if "record_digest" in raw else None)
        except (TypeError, ValueError) as e:
            raise CorruptRecord(f"{path}: spec, result or provenance is not canonical JSON ({e})") from None
        except RecursionError:
            raise CorruptRecord(f"{path}: nested too deeply to be a result record") from None
        if not isinstance(raw["spec"], dict) or not isinstance(raw["result"], dict) or not isinstance(provenance, dict):
            raise CorruptRecord(f"{path}: spec, result and provenance must be JSON objects")
        if key != path.stem or raw["key"] != path.stem:
            raise CorruptRecord(f"{path}: spec hashes to {key[:12]}…, not to its name")
        if digest != raw["result_digest"]:
            raise CorruptRecord(f"{path}: result does not match its digest (edited after it was written?)")
        if raw["spec"].get("stage") != path.parent.name:
            raise CorruptRecord(f"{path}: stage {raw['spec'].get('stage')!r} filed under {path.parent.name!r}")
        if whole is not None and whole != raw["record_digest"]:
            raise CorruptRecord(f"{path}: spec, result or provenance does not match the record digest "
                                "(edited after it was written?)")
        return Record(key, raw["spec"], raw["result"], provenance, whole is not None)

    def get(self, stage: str, key: str) -> Record | None:
        """The verified record, or None when absent. Corrupt files raise :class:`CorruptRecord`."""
        path = self.path(stage, key)
        if not path.exists():
            return None
        return self.load_file(path)

    def has(self, stage: str, key: str) -> bool:
        try:
            return self.get(stage, key) is not None
        except CorruptRecord:
            return False

    def iter_files(self) -> Iterator[Path]:
        if not self.root.exists():
            return
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield from sorted(stage_dir.glob("*.json"))

    # ------------------------------------------------------------------ writing
    def put(self, spec: dict, result: dict, provenance: dict | None = None) -> Record:
        """Write a result atomically. If the key exists already, keep the existing record (a result
        is never overwritten) and return it."""
        self._writable()
        key = content_key(spec)
        provenance = provenance or {}
        record = {"key": key, "spec": spec, "result": result, "result_digest": _digest(result),
                  "record_digest": _record_digest(spec, result, provenance), "provenance": provenance}
        text = json.dumps(record, sort_keys=True, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
        final = self.path(spec["stage"], key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # a full disk: leave no partial temporary behind
            tmp.unlink(missing_ok=True)
            raise
        try:
            os.link(tmp, final)  # atomic and refuses to replace an existing result
        except FileExistsError:
            existing = self.load_file(final)
            if not same_result(existing.result, result):
                self._note_conflict(key, existing.result, result)
            return existing
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        self.clear_failure(key)
        return Record(key, spec, result, record["provenance"])

    def _note_conflict(self, key: str, kept: dict, other: dict) -> None:
        """A recomputation disagreed with the stored result: keep the stored one, log the other."""
        d = self.root / ".conflicts"
        d.mkdir(exist_ok=True)
        (d / f"{key}-{int(time.time())}.json").write_text(json.dumps({"kept": kept, "discarded": other},
                                                                      default=str, indent=1))

    # ------------------------------------------------------------------ failures
    def record_failure(self, spec: dict, exc: BaseException) -> Path | None:
        """Note a failed cell (best effort: on a full or read-only disk the failure is only reported, and
        never leaves a half-written file that would break ``ls`` or ``gc``)."""
        self._writable()
        d = self.root / ".failures"
        key = content_key(spec)
        path = d / f"{key}.json"
        tmp = d / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
        try:
            d.mkdir(exist_ok=True)
            tmp.write_text(json.dumps({
                "key": key, "spec": spec, "error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(traceback.format_exception(exc)), "time": time.time(),
                "host": socket.gethostname(), "pid": os.getpid(),
            }, indent=1, default=str))
            os.replace(tmp, path)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return None
        return path

    def clear_failure(self, key: str) -> None:
        if not self.read_only:
            try:
                (self.root / ".failures" / f"{key}.json").unlink(missing_ok=True)
            except OSError:
                pass

    def failures(self) -> list[dict]:
        """Recorded failures; a damaged file (a crash or full disk mid-write) is listed as such, with its path."""
        d = self.root / ".failures"
        out = []
        for p in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                f = json.loads(p.read_text())
                if not (isinstance(f, dict) and isinstance(f.get("key"), str) and isinstance(f.get("spec"), dict)):
                    raise ValueError("not a failure record")
            except (OSError, ValueError, RecursionError):
                f = {"key": p.stem, "spec": None, "error": "unreadable failure file", "path": str(p)}
            out.append(f)
        return out

    # ------------------------------------------------------------------ locks
    @contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """Try to claim ``key`` for computing. Yields False if a live worker holds it."""
        self._writable()
        d = self.root / ".locks"
        d.mkdir(exist_ok=True)
        path = d / f"{key}.lock"
        me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
        if not self._acquire(path, me):
            yield False
            return
        stop = threading.Event()

        def heartbeat():
            while not stop.wait(LOCK_HEARTBEAT_SECONDS):
                try:
                    os.utime(path)
                except OSError:
                    return

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            yield True
        finally:
            stop.set()
            path.unlink(missing_ok=True)

    def _acquire(self, path: Path, me: dict) -> bool:
        # The lock appears with its content in one step (hard link of a written temporary file): a lock
        # created empty and filled afterwards could be read half-written by another worker, taken for
        # a killed process's and removed while its holder computes — two workers on one cell.
        tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}")
        tmp.write_text(json.dumps(me))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    if self._lock_is_stale(path):
                        path.unlink(missing_ok=True)
                        continue
                    return False
                return True
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def stale_locks(self) -> list[Path]:
        """Locks whose holder is gone (a killed worker's, or damaged and old): ``naspoison gc`` removes them."""
        return [p for p in (self.root / ".locks").glob("*.lock") if self._lock_is_stale(p)]

    @staticmethod
    def _lock_is_stale(path: Path) -> bool:
        try:
            holder = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: try again
        except (OSError, json.JSONDecodeError):
            # locks are written whole (see _acquire): unreadable means damaged, abandoned once old enough
            try:
                return time.time() - path.stat().st_mtime > LOCK_STALE_SECONDS
            except OSError:
                return False
        if holder.get("host") == socket.gethostname():
            return not _pid_alive(int(holder.get("pid", -1)))
        return age > LOCK_STALE_SECONDS
