"""``--workers`` never changes a result: every cell runs with the same intra-op thread count (1 unless
``--cell-threads``/``$NASPOISON_CELL_THREADS`` says otherwise), whatever the worker count and whatever the
calling process had set; the count, the CPU and the numerics flags are in each record's provenance."""
import torch

from naspoison.run import cell
from naspoison.run.executor import run_parallel
from naspoison.store import ArtifactCache, ResultStore
from naspoison.suite import Suite
from naspoison.suite.expand import expand, select


def _results(store: ResultStore) -> dict:
    return {p.name: ResultStore.load_file(p) for p in store.iter_files()}


def test_one_and_two_workers_give_the_same_bits(tiny):
    d = tiny(seeds=2, epochs=2)
    trials = select(expand(Suite(d / "suite.yaml"), "tiny").trials, "family=poisoning,attack=none")
    assert len(trials) == 2
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what a one-worker run on a 2-core machine had before cells fixed their count
    try:
        one = ResultStore(d / "one")
        assert not run_parallel(trials, one, ArtifactCache(d / "a1"), ["cpu"], emit=lambda e: None).failed
        assert torch.get_num_threads() == 2  # restored after each cell
    finally:
        torch.set_num_threads(before)
    two = ResultStore(d / "two")
    assert not run_parallel(trials, two, ArtifactCache(d / "a2"), ["cpu", "cpu"], emit=lambda e: None).failed
    a, b = _results(one), _results(two)
    assert len(a) == 4 and a.keys() == b.keys()
    for name in a:
        assert a[name].result == b[name].result, name
        for rec in (a[name], b[name]):
            prov = rec.provenance
            assert prov["threads"] == 1, prov
            assert prov["cpu_model"] and prov["autocast"] == "float32" and prov["gpu"] is None
            assert prov["deterministic_algorithms"] in (True, False) and "cudnn" in prov and "cuda" in prov


def test_cell_threads_setting(monkeypatch):
    import pytest

    monkeypatch.setenv(cell.THREADS_ENV, "3")
    assert cell.cell_threads() == 3
    for bad in ("0", "x"):
        monkeypatch.setenv(cell.THREADS_ENV, bad)
        with pytest.raises(ValueError, match="positive integer"):
            cell.cell_threads()


def test_provenance_autocast_is_what_the_cell_asked_for_on_any_device():
    """fp32 is the default everywhere (issue 18): a record says bf16 only where its parameters ask for it."""
    from naspoison.run.cell import autocast_of

    assert autocast_of({"params": {"recipe": {"precision": "fp32"}}}) == "float32"
    assert autocast_of({"params": {"epochs": 3}}) == "float32"
    assert autocast_of({"params": {"query_train": {"precision": "bf16"}}}) == "bfloat16"
    assert autocast_of({"params": {"stages": [{"precision": "bf16"}]}}) == "bfloat16"
