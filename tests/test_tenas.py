"""TE-NAS: ranking and pruning rules on hand-built tables; the search end to end on tiny data."""
import numpy as np
import pytest
import torch

from naspoison.data.datasets import make_image_data
from naspoison.nas.tenas import (
    KINDS,
    OPS,
    TENAS,
    Probe,
    TENASParams,
    choose_op_prunes,
    dense_ranks,
    rank_sum,
    round_sig,
    to_genotype,
)
from naspoison.spaces.darts import EDGES, Genotype
from naspoison.train import seed_everything


def tiny_data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    return make_image_data("tiny", rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8), rng.integers(0, 3, n),
                           rng.integers(0, 256, (10, 6, 6, 1), dtype=np.uint8), rng.integers(0, 3, 10), 3)


TINY = TENASParams(batch_size=3, lr_batch_size=40, lr_batches=1, repeats=1)


def test_dense_ranks_share_ties_and_count_distinct_values():
    assert dense_ranks([0.5, 0.1, 0.5, 0.9], descending=True) == [1, 2, 1, 0]
    assert dense_ranks([0.5, 0.1, 0.5, 0.9], descending=False) == [1, 0, 1, 2]
    assert round_sig(0.123456789, 3) == 0.123 and round_sig(-1234.5, 2) == -1200.0 and round_sig(0.0, 3) == 0.0


def test_rank_sum_orders_ntk_descending_and_regions_ascending():
    # candidate 0 lowers κ most when removed (prune it), candidate 2 adds most regions when removed
    d_ntk = [0.30, 0.10, 0.20]
    d_regions = [0.00, 0.05, -0.10]
    assert rank_sum(d_ntk, d_regions, precision=10) == [(0, 1, 1), (2, 2, 4), (1, 0, 1)]
    # equal to 3 significant digits -> one rank
    assert rank_sum([0.1234, 0.12341], [0.0, 0.0], precision=3) == [(0, 0, 0), (0, 0, 0)]


def test_choose_op_prunes_takes_the_lowest_sums_per_edge_and_never_the_last_op():
    alive = {k: np.zeros((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    alive["normal"][0, :4] = True    # 4 alive: may lose 3
    alive["reduce"][5, [1, 6]] = True  # 2 alive: may lose only 1
    cands = [("normal", 0, o) for o in range(4)] + [("reduce", 5, 1), ("reduce", 5, 6)]
    sums = [5, 1, 3, 2, 0, 0]
    pruned = choose_op_prunes(cands, sums, alive, per_edge=3)
    assert sorted(pruned) == sorted([("normal", 0, 1), ("normal", 0, 3), ("normal", 0, 2), ("reduce", 5, 1)])


def test_to_genotype_reads_one_op_per_kept_edge():
    alive = {k: np.zeros((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    # keep edges (2,0),(2,1),(3,0),(3,2),(4,1),(4,3),(5,2),(5,4) with op index = edge index % 7
    keep = [(2, 0), (2, 1), (3, 0), (3, 2), (4, 1), (4, 3), (5, 2), (5, 4)]
    for k in KINDS:
        for e, edge in enumerate(EDGES):
            if edge in keep:
                alive[k][e, e % len(OPS)] = True
    g = to_genotype(alive)
    expect = tuple((OPS[EDGES.index(edge) % len(OPS)], edge[1]) for edge in keep)
    assert g.normal == expect and g.reduce == expect
    alive["normal"][EDGES.index((5, 3)), 0] = True  # a third edge into node 5
    with pytest.raises(ValueError, match="node 5"):
        to_genotype(alive)


def test_removing_an_op_is_a_mask_on_shared_weights():
    data = tiny_data()
    probe = Probe(data, TINY, np.random.default_rng(0), torch.device("cpu"))
    probe.new_repeat()
    full = {k: np.ones((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    child = {k: v.copy() for k, v in full.items()}
    child["normal"][3, 2] = False
    k0, r0 = probe.measure(full)
    k1, _ = probe.measure(child)
    assert probe.measure(full) == (k0, r0)  # masks are reversible: same weights, same inputs, same numbers
    assert k1 != k0
    assert 1 <= r0 <= 40 and 0 < k0 < 1e12


@pytest.mark.parametrize("init", ["reference", "kaiming"])
def test_batched_children_equal_one_network_at_a_time(init, monkeypatch):
    """κ and region counts of many children in batched passes = those of each child network measured alone
    (masked), κ to float rounding; parents with 7 and with 4 ops per edge, candidates of both cell types,
    several passes."""
    import naspoison.nas.tenas as tenas

    monkeypatch.setattr(tenas, "CANDIDATES_PER_PASS", 8)  # 20 candidates: three passes, the last one short
    torch.manual_seed(0)  # the initial weights (a singular NTK, κ capped at 1e12 for every child, would test nothing)
    data = tiny_data(n=60)
    p = TINY.model_copy(update={"init": init, "batch_size": 5})
    probe = Probe(data, p, np.random.default_rng(1), torch.device("cpu"))
    probe.new_repeat()
    rng = np.random.default_rng(2)
    full = {k: np.ones((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    four = {k: np.zeros((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    for k in KINDS:
        for e in range(len(EDGES)):
            four[k][e, rng.choice(len(OPS), 4, replace=False)] = True
    for parent in (full, four):
        cands = [(k, e, int(o)) for k in KINDS for e in range(len(EDGES)) for o in np.flatnonzero(parent[k][e])]
        cands = [cands[i] for i in sorted(rng.choice(len(cands), 20, replace=False))]
        batched, batched_regions = probe.child_kappas(parent, cands), probe.child_regions(parent, cands)
        alone = []
        for kind, e, o in cands:
            child = {k: v.copy() for k, v in parent.items()}
            child[kind][e, o] = False
            alone.append(probe.measure(child))
        assert batched == pytest.approx([k for k, _ in alone], rel=1e-5)  # measured: at most 2e-6 (float32, other kernels)
        assert batched_regions == [r for _, r in alone]
        assert len({k for k, _ in alone}) > 1  # the children differ: the comparison is not of one number
    one = {k: v.copy() for k, v in four.items()}
    one["normal"][0] = False
    one["normal"][0, 2] = True
    with pytest.raises(ValueError, match="empty"):
        probe.child_kappas(one, [("normal", 0, 2)])
    with pytest.raises(ValueError, match="empty"):
        probe.child_regions(one, [("normal", 0, 2)])


def test_reference_init_keeps_weights_and_kaiming_redraws_them_per_repeat():
    data = tiny_data()
    for init, same in (("reference", True), ("kaiming", False)):
        probe = Probe(data, TINY.model_copy(update={"init": init}), np.random.default_rng(0), torch.device("cpu"))
        probe.new_repeat()
        w0 = [p.detach().clone() for p in probe.ntk_net.parameters()]
        probe.new_repeat()
        w1 = list(probe.ntk_net.parameters())
        assert all(torch.equal(a, b) for a, b in zip(w0, w1)) == same, init


@pytest.mark.slow
def test_search_prunes_7_4_1_then_keeps_two_edges_per_node_and_is_deterministic():
    data = tiny_data()
    out = TENAS().search(data, TINY, seed=3)
    g = Genotype.from_dict(out["genotype"])
    assert out["init"] == "reference"
    ops_rounds = [r for r in out["rounds"] if r["phase"] == "ops"]
    assert [len(r["candidates"]) for r in ops_rounds] == [2 * 14 * 7, 2 * 14 * 4]
    assert [len(r["pruned"]) for r in ops_rounds] == [2 * 14 * 3, 2 * 14 * 3]
    edge_rounds = [r for r in out["rounds"] if r["phase"].startswith("edges")]
    assert [len(r["pruned"]) for r in edge_rounds] == [1, 2, 3, 1, 2, 3]
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    # the recorded first round is reproduced exactly by a fresh run of its first candidates (same
    # seed -> same weights, same batch, same crops): every number behind the ranking is on record
    seed_everything(3)
    full = {k: np.ones((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    # (the whole round: children share batched passes, so the same passes give the same floats)
    again = TENAS()._score([tuple(c) for c in ops_rounds[0]["candidates"]], full, data, TINY,
                           np.random.default_rng([3, 0x7E4A5]), torch.device("cpu"))
    assert again["parent_kappa_regions"] == ops_rounds[0]["parent_kappa_regions"]
    assert again["d_ntk"] == ops_rounds[0]["d_ntk"] and again["d_regions"] == ops_rounds[0]["d_regions"]
