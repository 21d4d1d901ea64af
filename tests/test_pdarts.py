"""P-DARTS: the pure rules against hand-computed examples, the supernet against the evaluation
network it must share a definition with, and the search's determinism and data boundaries."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from naspoison.data.datasets import DatasetSpec, load_dataset
from naspoison.nas.pdarts import (
    PDARTS,
    PDARTSParams,
    _derive,
    _split,
    cap_skips,
    derive_cell,
    keep_strongest,
    skip_dropout_rate,
    to_pairs,
)
from naspoison.spaces.darts import EDGES, OP_NAMES, EvalNetwork, Genotype
from naspoison.spaces.darts_supernet import MixedOp, SuperNetwork

S, C3, N = "skip_connect", "sep_conv_3x3", "none"


# ----------------------------------------------------------------------------- op dropping
def test_keep_strongest_drops_the_lowest_weights_and_keeps_op_order():
    probs = np.array([
        [0.05, 0.20, 0.01, 0.30, 0.10, 0.15, 0.12, 0.07],   # drop avg_pool, none, dil_conv_5x5
        [0.10, 0.10, 0.10, 0.10, 0.20, 0.20, 0.10, 0.10],   # six-way tie: the earliest three go
    ])
    kept = keep_strongest([OP_NAMES, OP_NAMES], probs, 5)
    assert kept[0] == ["max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3"]
    assert kept[1] == ["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


def test_last_stage_drops_none_first_even_when_it_is_strongest():
    ops = [[N, S, C3], [S, C3, "dil_conv_3x3"]]
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    assert keep_strongest(ops, probs, 1, none_first=True) == [[S], ["dil_conv_3x3"]]
    assert keep_strongest(ops, probs, 1, none_first=False) == [[N], ["dil_conv_3x3"]]
    assert keep_strongest(ops, probs, 2, none_first=True) == [[S, C3], [C3, "dil_conv_3x3"]]


# ----------------------------------------------------------------------------- derivation
# Every edge keeps [none, skip, sep_conv_3x3]; weights chosen so that the hand-derived cell
# exercises: `none` strongest but ignored (edge 2), op ties (edges 4, 7, 12), edge ranking.
EDGE_OPS = [[N, S, C3] for _ in EDGES]
PROBS = np.array([
    [0.1, 0.6, 0.3],    # 0  (2,0) skip .6
    [0.2, 0.5, 0.3],    # 1  (2,1) skip .5
    [0.7, 0.1, 0.2],    # 2  (3,0) sep .2 (none ignored)
    [0.1, 0.2, 0.7],    # 3  (3,1) sep .7
    [0.1, 0.45, 0.45],  # 4  (3,2) tie -> skip .45
    [0.0, 0.8, 0.2],    # 5  (4,0) skip .8
    [0.3, 0.3, 0.4],    # 6  (4,1) sep .4
    [0.5, 0.25, 0.25],  # 7  (4,2) tie -> skip .25
    [0.2, 0.1, 0.7],    # 8  (4,3) sep .7
    [0.1, 0.3, 0.6],    # 9  (5,0) sep .6
    [0.1, 0.35, 0.55],  # 10 (5,1) sep .55
    [0.1, 0.65, 0.25],  # 11 (5,2) skip .65
    [0.9, 0.05, 0.05],  # 12 (5,3) tie -> skip .05
    [0.1, 0.2, 0.7],    # 13 (5,4) sep .7
])
UNCAPPED = ((S, 0), (S, 1), (C3, 1), (S, 2), (S, 0), (C3, 3), (S, 2), (C3, 4))


def test_derivation_matches_the_hand_computed_cell():
    chosen = derive_cell(EDGE_OPS, PROBS)
    assert to_pairs(chosen) == UNCAPPED
    assert [e for e, _, _ in chosen] == [0, 1, 3, 4, 5, 8, 11, 13]


def test_skip_cap_removes_the_weakest_skip_connects_one_at_a_time():
    # skips chosen: edges 5 (.8), 11 (.65), 0 (.6), 1 (.5), 4 (.45). Cap 2 removes 4, 1, 0 in that
    # order; each edge falls back to sep_conv_3x3 and keeps its place.
    chosen, banned = cap_skips(EDGE_OPS, PROBS, 2)
    assert to_pairs(chosen) == ((C3, 0), (C3, 1), (C3, 1), (C3, 2), (S, 0), (C3, 3), (S, 2), (C3, 4))
    assert banned == {(4, S), (1, S), (0, S)}
    # cap 1 removes edge 11: its fallback (.25) loses its place at node 5 to edge 9 (.6)
    chosen, banned = cap_skips(EDGE_OPS, PROBS, 1, banned)
    assert to_pairs(chosen)[6:] == ((C3, 0), (C3, 4))
    # cap 0 removes edge 5: node 4 now takes edges 8 (.7) and 6 (.4)
    chosen, _ = cap_skips(EDGE_OPS, PROBS, 0, banned)
    assert to_pairs(chosen)[4:6] == ((C3, 1), (C3, 3))
    assert all(op != S for op, _ in to_pairs(chosen))


def test_final_genotype_is_the_cap_2_variant_and_every_variant_is_kept():
    out = _derive({"normal": EDGE_OPS, "reduce": EDGE_OPS}, {"normal": PROBS, "reduce": PROBS}, skip_cap=2)
    assert [v["cap"] for v in out["skip_variants"]] == [4, 3, 2, 1, 0]
    by_cap = {v["cap"]: Genotype.from_dict(v["genotype"]) for v in out["skip_variants"]}
    assert [sum(op == S for op, _ in g.normal) for c, g in sorted(by_cap.items())] == [0, 1, 2, 3, 4]
    assert Genotype.from_dict(out["genotype"]) == by_cap[2]
    assert Genotype.from_dict(out["uncapped_genotype"]).normal == UNCAPPED
    assert Genotype.from_dict(out["genotype"]).reduce == UNCAPPED  # the reduction cell is never capped
    assert out["skip_variants"][2]["banned"] == [[0, S], [1, S], [4, S]]


# ----------------------------------------------------------------------------- dropout schedule
def test_skip_dropout_schedule_is_the_published_formula():
    # P-DARTS CIFAR-10 stage 3: rate 0.7, 25 epochs, 10 warm-up epochs, decay factor 0.2
    expected = {0: 0.7 * 24 / 25, 9: 0.7 * 15 / 25, 10: 0.7, 11: 0.7 * math.exp(-0.2), 24: 0.7 * math.exp(-2.8)}
    for epoch, value in expected.items():
        assert skip_dropout_rate(0.7, epoch, 25, 10) == pytest.approx(value, abs=1e-12)
    assert skip_dropout_rate(0.7, 9, 25, 10) == pytest.approx(0.42)
    assert skip_dropout_rate(0.0, 3, 25, 10) == 0.0


def test_params_require_a_dropout_rate_per_stage():
    with pytest.raises(ValidationError, match="skip_dropout"):
        PDARTSParams()
    with pytest.raises(ValidationError, match="one entry per stage"):
        PDARTSParams(skip_dropout=[0.0, 0.4])
    with pytest.raises(ValidationError, match="end at 1"):
        PDARTSParams(skip_dropout=[0.0, 0.4, 0.7], ops_kept=[5, 3, 2])
    p = PDARTSParams(skip_dropout=[0.0, 0.4, 0.7])
    assert (p.cells, p.ops_kept, p.epochs, p.warmup_epochs, p.batch_size) == ([5, 11, 17], [5, 3, 1], 25, 10, 96)
    assert (p.arch_lr, p.arch_betas, p.arch_weight_decay, p.lr, p.weight_decay) == (6e-4, (0.5, 0.999), 1e-3, 0.025, 3e-4)


# ----------------------------------------------------------------------------- supernet
def test_mixed_op_is_the_softmax_weighted_sum_of_its_ops():
    torch.manual_seed(0)
    op = MixedOp(4, 1, OP_NAMES).eval()
    x = torch.randn(2, 4, 6, 6)
    w = torch.softmax(torch.randn(len(OP_NAMES)), 0)
    reference = sum(w[i] * m(x) for i, m in enumerate(op.ops))  # includes `none`'s zero term
    torch.testing.assert_close(op(x, w), reference)


def test_supernet_with_one_op_per_edge_computes_the_evaluation_network():
    """One definition: a supernet whose edges hold exactly a genotype's ops (others `none`) is the
    evaluation network of that genotype, weight for weight."""
    genotype = Genotype(
        normal=((C3, 0), ("dil_conv_3x3", 1), (S, 0), ("sep_conv_5x5", 2), (C3, 1), (S, 3), ("dil_conv_5x5", 2), (C3, 4)),
        normal_concat=(2, 3, 4, 5),
        reduce=((S, 0), (C3, 1), ("dil_conv_3x3", 0), (S, 2), ("sep_conv_5x5", 1), (C3, 3), (S, 4), ("dil_conv_5x5", 0)),
        reduce_concat=(2, 3, 4, 5))

    def edge_ops(pairs):
        table = [[N] for _ in EDGES]
        for j, (op, inp) in enumerate(pairs):
            table[EDGES.index((2 + j // 2, inp))] = [op]
        return table

    torch.manual_seed(0)
    ev = EvalNetwork(genotype, C=4, layers=4, num_classes=5, in_channels=3, auxiliary=False, image_size=12)
    sn = SuperNetwork(edge_ops(genotype.normal), edge_ops(genotype.reduce), C=4, layers=4, num_classes=5)
    convs = lambda m: [c for c in m.modules() if isinstance(c, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for i, (ecell, scell) in enumerate(zip(ev.cells, sn.cells, strict=True)):
            pairs = list(zip(ecell.ops, ecell.inputs))
            for j, (eop, inp) in enumerate(pairs):
                sop = scell.edges[EDGES.index((2 + j // 2, inp))].ops[0]
                for a, b in zip(convs(eop), convs(sop), strict=True):
                    b.weight.copy_(a.weight)
            for a, b in zip(convs(nn.ModuleList([ecell.preprocess0, ecell.preprocess1])),
                            convs(nn.ModuleList([scell.preprocess0, scell.preprocess1])), strict=True):
                b.weight.copy_(a.weight)
        sn.stem.load_state_dict(ev.stem.state_dict())
        sn.classifier.load_state_dict(ev.classifier.state_dict())
    x = torch.randn(3, 3, 12, 12)
    ev.train(), sn.train()
    torch.testing.assert_close(sn(x), ev(x)[0], atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in sn.weight_parameters()) == sum(p.numel() for p in ev.parameters()) - sum(
        m.weight.numel() + m.bias.numel() for m in ev.modules() if isinstance(m, nn.BatchNorm2d)
        and m not in list(ev.stem.modules()))  # search BN has no affine parameters, except the stem's


# ----------------------------------------------------------------------------- the search
TINY = {"cells": [3, 3, 3], "skip_dropout": [0.0, 0.4, 0.7], "epochs": 2, "warmup_epochs": 1, "batch_size": 32,
        "init_channels": 2, "search_size": 96, "crop_padding": 1, "flip": False}


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec(name="digits").model_dump())


def test_two_cpu_runs_with_one_seed_give_one_genotype_and_never_read_the_test_set(digits):
    params = PDARTSParams(**TINY)
    a = PDARTS().search(digits, params, seed=3)
    # the second run's test set is garbage: if the search looked at it, something would change
    junk = replace(digits, x_test=np.full_like(digits.x_test, 255), y_test=(digits.y_test + 1) % 10)
    b = PDARTS().search(junk, params, seed=3)
    assert a == b
    Genotype.from_dict(a["genotype"])
    assert [s["cells"] for s in a["stages"]] == [3, 3, 3]
    assert [len(s["ops"]["normal"][0]) for s in a["stages"]] == [8, 5, 3]
    assert [len(s["kept"]["normal"][0]) for s in a["stages"]] == [5, 3, 1]
    assert all(N not in ops for ops in a["stages"][-1]["kept"]["normal"])
    for s in a["stages"]:  # every stage's alphas and curves are kept for audit
        assert np.array(s["alpha"]["normal"]).shape == (14, len(s["ops"]["normal"][0]))
        assert s["curves"]["arch_loss"][0] is None and s["curves"]["arch_loss"][1] is not None  # warm-up first
    # the derived genotype uses, on each chosen edge, the op the last drop kept
    last = a["stages"][-1]["kept"]
    for j, (op, inp) in enumerate(Genotype.from_dict(a["uncapped_genotype"]).reduce):
        assert last["reduce"][EDGES.index((2 + j // 2, inp))] == [op]
    c = PDARTS().search(digits, params, seed=4)
    assert c["stages"][0]["alpha"] != a["stages"][0]["alpha"]


def test_search_halves_are_a_seeded_disjoint_split_of_the_poisoned_training_set(digits):
    poisoned = replace(digits, y_train=(digits.y_train + 3) % 10)  # stands in for any poison
    params = PDARTSParams(**{**TINY, "search_size": None})
    w, a, split = _split(poisoned, params, seed=0, device=torch.device("cpu"))
    n = len(poisoned.y_train)
    assert split == {"weights": round(n / 2), "alphas": n - round(n / 2), "of": n}
    # every (image, label) in either half is a poisoned training pair, and together they are all of them
    pairs = {(poisoned.x_train[i].tobytes(), int(poisoned.y_train[i])) for i in range(n)}
    seen = [(img.permute(1, 2, 0).numpy().tobytes(), int(lbl)) for half in (w, a) for img, lbl in zip(half.x, half.y)]
    assert set(seen) <= pairs and len(seen) == n
    assert len(set(seen)) == len(pairs)
    w2, _, _ = _split(poisoned, params, seed=0, device=torch.device("cpu"))
    w3, _, _ = _split(poisoned, params, seed=1, device=torch.device("cpu"))
    assert torch.equal(w.y, w2.y) and not torch.equal(w.y, w3.y)
