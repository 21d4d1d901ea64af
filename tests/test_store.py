import json
import math
import subprocess
import sys

import pytest

from naspoison.store import ArtifactCache, CorruptRecord, ResultStore, canonical_json, content_key
from naspoison.store.results import ReadOnlyStore


def spec(i=0):
    return {"stage": "train", "version": "1", "params": {"seed": i, "lr": 0.025}, "upstream": {}}


def test_canonical_json_sorted_compact_and_rejects_nan():
    assert canonical_json({"b": 1, "a": [0.1, 2]}) == '{"a":[0.1,2],"b":1}'
    assert canonical_json({"x": 1e-2}) == '{"x":0.01}'
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
    with pytest.raises(ValueError):
        canonical_json({"x": [math.inf]})


def test_key_ignores_order_but_not_values():
    a = {"stage": "s", "params": {"x": 1, "y": 2}}
    b = {"params": {"y": 2, "x": 1}, "stage": "s"}
    assert content_key(a) == content_key(b)
    assert content_key(a) != content_key({"stage": "s", "params": {"x": 1, "y": 3}})


def test_put_get_round_trip_and_file_named_by_key(tmp_path):
    store = ResultStore(tmp_path)
    rec = store.put(spec(), {"test_acc": 0.5}, {"host": "h"})
    assert store.path("train", rec.key).name == f"{content_key(spec())}.json"
    assert store.get("train", rec.key).result == {"test_acc": 0.5}
    assert list(tmp_path.glob("train/.tmp-*")) == []


def test_result_is_never_overwritten(tmp_path):
    store = ResultStore(tmp_path)
    first = store.put(spec(), {"test_acc": 0.5})
    again = store.put(spec(), {"test_acc": 0.9})
    assert again.result == {"test_acc": 0.5}
    assert store.get("train", first.key).result == {"test_acc": 0.5}
    assert len(list((tmp_path / ".conflicts").glob("*.json"))) == 1


@pytest.mark.parametrize("tamper", [
    lambda d: d["result"].__setitem__("test_acc", 0.99),
    lambda d: d["spec"]["params"].__setitem__("seed", 7),
    lambda d: d.__setitem__("key", "0" * 64),
])
def test_tampered_file_is_rejected(tmp_path, tamper):
    store = ResultStore(tmp_path)
    rec = store.put(spec(), {"test_acc": 0.5})
    path = store.path("train", rec.key)
    d = json.loads(path.read_text())
    tamper(d)
    path.write_text(json.dumps(d))
    with pytest.raises(CorruptRecord):
        store.get("train", rec.key)
    assert not store.has("train", rec.key)


def test_truncated_file_is_rejected(tmp_path):
    store = ResultStore(tmp_path)
    rec = store.put(spec(), {"test_acc": 0.5})
    path = store.path("train", rec.key)
    path.write_text(path.read_text()[:40])
    with pytest.raises(CorruptRecord, match="unreadable"):
        store.get("train", rec.key)


def test_read_only_store_refuses_every_write(tmp_path):
    ResultStore(tmp_path).put(spec(), {"a": 1})
    ro = ResultStore(tmp_path, read_only=True)
    with pytest.raises(ReadOnlyStore):
        ro.put(spec(1), {"a": 1})
    with pytest.raises(ReadOnlyStore):
        ro.record_failure(spec(1), RuntimeError("x"))
    with pytest.raises(ReadOnlyStore), ro.claim("k"):
        pass


def test_failures_are_kept_apart_and_cleared_on_success(tmp_path):
    store = ResultStore(tmp_path)
    store.record_failure(spec(), RuntimeError("boom"))
    assert [f["error"] for f in store.failures()] == ["RuntimeError: boom"]
    assert list(store.iter_files()) == []
    store.put(spec(), {"ok": True})
    assert store.failures() == []


def test_claim_is_exclusive_and_dead_holders_are_reclaimed(tmp_path):
    store = ResultStore(tmp_path)
    with store.claim("k") as first:
        assert first
        with store.claim("k") as second:
            assert not second
    # a lock left by a process that died (kill -9) is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True, text=True)
    (tmp_path / ".locks").mkdir(exist_ok=True)
    import socket
    (tmp_path / ".locks" / "k.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with store.claim("k") as got:
        assert got


def test_an_unreadable_lock_is_not_taken_while_fresh(tmp_path):
    """A lock file with no content yet (the race of create-then-write) must not count as a dead holder's:
    taking it over would let two workers compute one cell. Only an old unreadable lock is abandoned."""
    import os
    import time

    store = ResultStore(tmp_path)
    (tmp_path / ".locks").mkdir(exist_ok=True)
    lock = tmp_path / ".locks" / "k.lock"
    lock.write_text("")
    with store.claim("k") as got:
        assert not got and lock.exists()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with store.claim("k") as got:
        assert got and json.loads(lock.read_text())["pid"] == os.getpid()  # written whole
    assert not lock.exists() and not list((tmp_path / ".locks").glob(".tmp-*"))


def test_artifacts_are_raw_bytes_only(tmp_path):
    art = ArtifactCache(tmp_path / "a", size_limit=10 * 2**20)
    art.put("k", b"\x00\x01payload")
    assert art.get("k") == b"\x00\x01payload"
    with pytest.raises(TypeError):
        art.put("j", {"not": "bytes"})
    assert art.get("missing") is None
    art.close()
