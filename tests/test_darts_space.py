import numpy as np
import pytest
import torch

from naspoison.spaces.darts import (
    DARTS_V2,
    EDGES,
    OP_NAMES,
    OPS,
    PDARTS_GENOTYPE,
    EvalNetwork,
    Genotype,
    count_parameters,
    drop_path,
    sample_genotype,
)


@pytest.mark.parametrize("genotype, published_millions, exact", [
    (DARTS_V2, 3.3, 3_349_342),   # DARTS paper: 3.3 M; its train.py logs "param size = 3.349342MB"
    (PDARTS_GENOTYPE, 3.4, None),  # P-DARTS paper: 3.4 M
])
def test_published_genotypes_build_to_published_size(genotype, published_millions, exact):
    n = count_parameters(EvalNetwork(genotype, C=36, layers=20, num_classes=10))
    assert round(n / 1e6, 1) == published_millions
    if exact:
        assert n == exact


def test_space_has_14_edges_and_8_ops():
    assert len(EDGES) == 14 and len(OP_NAMES) == 8 and set(OPS) == set(OP_NAMES)


def test_genotype_json_round_trip_by_op_name():
    for g in (DARTS_V2, PDARTS_GENOTYPE, sample_genotype(np.random.default_rng(3))):
        s = g.to_json()
        assert "sep_conv" in s or "pool" in s or "conv" in s
        assert Genotype.from_json(s) == g


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["normal"].__setitem__(0, ["conv_7x7", 0]), "unknown or empty op"),
    (lambda d: d["normal"].__setitem__(0, ["none", 0]), "unknown or empty op"),
    (lambda d: d["reduce"].__setitem__(2, ["skip_connect", 4]), "cannot take input"),
    (lambda d: d["normal"].pop(), "needs 8"),
    (lambda d: d.__setitem__("normal_concat", [1, 2]), "intermediate nodes"),
])
def test_invalid_genotypes_are_rejected(mutate, message):
    d = DARTS_V2.to_dict()
    mutate(d)
    with pytest.raises(ValueError, match=message):
        Genotype.from_dict(d)


def test_random_genotype_is_seeded_and_valid():
    a = [sample_genotype(np.random.default_rng(s)) for s in range(50)]
    b = [sample_genotype(np.random.default_rng(s)) for s in range(50)]
    assert a == b
    assert len({g.to_json() for g in a}) == 50
    for g in a:
        for j in range(0, 8, 2):  # two distinct inputs per node
            assert g.normal[j][1] != g.normal[j + 1][1]


def test_eval_network_shapes_train_and_eval():
    net = EvalNetwork(PDARTS_GENOTYPE, C=4, layers=5, num_classes=7, in_channels=1, image_size=8)
    net.train()
    logits, aux = net(torch.randn(3, 1, 8, 8))
    assert logits.shape == (3, 7) and aux.shape == (3, 7)
    net.eval()
    logits, aux = net(torch.randn(3, 1, 8, 8))
    assert aux is None


def test_drop_path_zeroes_whole_samples_and_keeps_expectation():
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 3, 3)
    y = drop_path(x, 0.3)
    per_sample = y.view(20000, -1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == per_sample[:, :1]).all(1))
    assert abs(y.mean().item() - 1.0) < 0.02
    assert torch.equal(drop_path(x, 0.0), x)


def test_factorized_reduce_weight_gradients_are_exact_on_channels_last_cpu_input():
    """Regression: oneDNN's strided 1x1 conv weight gradient on channels_last CPU input is wrong
    (torch 2.14); FactorizedReduce must give the NCHW gradients whatever the input layout."""
    from naspoison.spaces.darts import FactorizedReduce

    torch.manual_seed(0)
    x = torch.randn(32, 6, 8, 8)
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last, torch.channels_last):
        torch.manual_seed(1)
        op = FactorizedReduce(6, 6, affine=False)
        y = op(x.contiguous(memory_format=layout))
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in op.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(grads[1], grads[2])
