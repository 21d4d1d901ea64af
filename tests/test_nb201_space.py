"""NB201 arch strings: exact round trip over the whole space, and clear errors."""
import pytest

from naspoison.spaces import nb201


def test_arch_strings_round_trip_over_all_15625_cells():
    seen = set()
    for index in range(nb201.N_ARCHS):
        ops = nb201.from_index(index)
        text = nb201.to_string(ops)
        assert nb201.parse(text) == ops and nb201.to_index(ops) == index
        seen.add(text)
    assert len(seen) == 15_625 == 5 ** 6


def test_a_published_arch_string_parses_edge_by_edge():
    # the best CIFAR-10 cell of NAS-Bench-201 as its paper prints it
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    ops = nb201.parse(text)
    assert dict(zip(nb201.EDGES, ops)) == {(0, 1): "nor_conv_3x3", (0, 2): "nor_conv_3x3", (1, 2): "nor_conv_3x3",
                                           (0, 3): "skip_connect", (1, 3): "nor_conv_3x3", (2, 3): "nor_conv_3x3"}
    assert nb201.to_string(ops) == text


@pytest.mark.parametrize("bad, message", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 node groups"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "expected '~1'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 inputs"),
])
def test_malformed_arch_strings_are_rejected_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        nb201.parse(bad)
    with pytest.raises(ValueError, match="outside"):
        nb201.from_index(15_625)


def _count(ops):
    return sum(p.numel() for p in nb201.Network(ops).parameters())


def test_network_parameter_counts_match_the_layer_shapes_and_the_published_range():
    # by hand, C = 16, 5 cells a stage, 10 classes (weights + BN affine; convs have no bias)
    stem = 3 * 16 * 9 + 2 * 16
    def reduction(a, b):
        return a * b * 9 + 2 * b + b * b * 9 + 2 * b + a * b
    fixed = stem + reduction(16, 32) + reduction(32, 64) + 2 * 64 + 64 * 10 + 10
    assert _count(("none",) * 6) == fixed == 73_306                      # published minimum: 0.073 M
    conv3 = sum(5 * 6 * (c * c * 9 + 2 * c) for c in (16, 32, 64))
    assert _count(("nor_conv_3x3",) * 6) == fixed + conv3 == 1_531_546   # published maximum: 1.53 M
    conv1 = sum(5 * (c * c + 2 * c) for c in (16, 32, 64))                # one 1x1 edge per cell
    assert _count(("nor_conv_1x1",) + ("skip_connect",) * 5) == fixed + conv1
    import torch
    logits, aux = nb201.Network(nb201.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")).eval()(
        torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None


def test_nats_lookup_passes_an_explicit_schedule_and_trial_seed():
    from naspoison.spaces import nats

    class FakeAPI:  # the two calls of nats_bench's API that the lookup makes
        def __init__(self):
            self.calls = []

        def query_index_by_arch(self, arch):
            return 7 if arch == TEXT else -1

        def get_more_info(self, index, dataset, hp, is_random):
            self.calls.append((index, dataset, hp, is_random))
            return {"test-accuracy": 93.5, "train-accuracy": 99.9, "valid-accuracy": 90.1}

    TEXT = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    api = FakeAPI()
    out = nats.lookup(api, TEXT, "cifar10", "200", 777)
    assert out["test_accuracy"] == 93.5 and out["nats_index"] == 7 and api.calls == [(7, "cifar10", "200", 777)]
    with pytest.raises(ValueError, match="hp '12' or '200'"):
        nats.lookup(api, TEXT, "cifar10", "90", 777)
    with pytest.raises(TypeError, match="trial seed explicitly"):
        nats.lookup(api, TEXT, "cifar10", "200", True)  # the API's is_random=True: a random trial
    with pytest.raises(KeyError, match="not in this NATS-Bench file"):
        nats.lookup(api, TEXT.replace("skip_connect", "none"), "cifar10", "200", 777)
    with pytest.raises(ValueError, match="unknown op"):
        nats.lookup(api, TEXT.replace("skip_connect", "skip"), "cifar10", "200", 777)
