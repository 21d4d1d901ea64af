"""Evas: the trigger generator, the C×C trigger-NTK score against a one-backward-per-logit reference,
aging evolution (determinism, caching, mutation law), and generator training against a frozen model."""
import collections

import numpy as np
import pytest
import torch

from naspoison.attacks.surrogate import SurrogateRecipe
from naspoison.backdoor import TriggerGenerator
from naspoison.backdoor.attack import GeneratorRecipe, attack_metrics, train_generator
from naspoison.backdoor.score import trigger_ntk, trigger_ntk_reference, triggered
from naspoison.data.augment import channel_stats
from naspoison.nas.evas import MUTATION_WEIGHTS, EvasParams, EvasSearch, Scorer, mutate
from naspoison.nas.metrics import KAPPA_MAX, kappa
from naspoison.spaces import nb201
from naspoison.train import fit, seed_everything

CELL = nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|")


@pytest.mark.parametrize("variant", ["vinai", "trojanzoo"])
def test_trigger_stays_in_the_unit_interval_and_differs_per_input(variant):
    torch.manual_seed(0)
    g = TriggerGenerator(3, variant, channels=8, mean=[0.5] * 3, std=[0.25] * 3)
    x = torch.rand(6, 3, 16, 16)
    x[0] = 0.0  # extremes
    x[1] = 1.0
    xt = triggered(g, x)  # train-mode BN, as the score uses it
    assert xt.min() >= 0 and xt.max() <= 1 and xt.shape == x.shape
    # input-aware: the change each image gets is its own (not one trigger pasted on all)
    delta = xt - x
    assert delta[2].abs().max() > 1e-2 and (delta[2] - delta[3]).abs().max() > 1e-2
    g.eval()  # per-sample from here on (batch statistics would couple the rows)
    xt = g(x)
    assert xt.min() >= 0 and xt.max() <= 1
    m, p = g.mask(x), g.pattern(x)
    assert m.shape == (6, 1, 16, 16) and 0 <= m.min() and m.max() <= 1 and 0 <= p.min() and p.max() <= 1
    torch.testing.assert_close(xt, (1 - m) * x + m * p)  # x' = (1 − m)⊙x + m⊙p
    # the cross trigger takes its mask and pattern from the source image
    torch.testing.assert_close(g(x[:2], source=x[2:4]), (1 - m[2:4]) * x[:2] + m[2:4] * p[2:4])
    with pytest.raises(ValueError, match="divisible by 8"):
        g(torch.rand(1, 3, 12, 12))


def test_variants_squash_as_their_references_do():
    raw = torch.linspace(-3, 3, 13)
    vinai, tz = TriggerGenerator(1, "vinai").variant, TriggerGenerator(1, "trojanzoo").variant
    torch.testing.assert_close(vinai.squash_mask(raw), (torch.tanh(20 * (torch.tanh(raw) / 2 + 0.5) - 10) + 1) / 2)
    torch.testing.assert_close(tz.squash_mask(raw), (torch.tanh(10 * torch.tanh(raw)) + 1) / 2)
    torch.testing.assert_close(tz.squash_pattern(raw), (torch.tanh(raw) + 1) / 2)
    with pytest.raises(ValueError, match="unknown trigger variant 'badnets'"):
        TriggerGenerator(3, "badnets")


@pytest.mark.parametrize("chunk, net", [(1, "nb201"), (4, "nb201"), (5, "nb201"), (3, "resnet18")])
def test_trigger_ntk_equals_one_backward_per_logit(chunk, net):
    from naspoison.models import ResNet18

    torch.manual_seed(1)
    model = (nb201.Network(CELL, num_classes=5, C=4, cells_per_stage=1, in_channels=3) if net == "nb201"
             else ResNet18(5, in_channels=3, width=2))
    gen = TriggerGenerator(3, channels=4)
    x = triggered(gen, torch.rand(7, 3, 8, 8))
    fast, slow = trigger_ntk(model, x, chunk), trigger_ntk_reference(model, x)
    assert fast.shape == (5, 5) and fast.dtype == torch.float64
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-9)
    assert kappa(fast) == pytest.approx(kappa(slow), rel=1e-4)
    assert torch.linalg.eigvalsh(fast).min() > 0  # a well-defined κ here, not the cap


def test_a_network_without_a_path_from_the_input_gets_the_stated_cap():
    # all-none cells: the logits do not depend on the input, Θ is rank-deficient → KAPPA_MAX
    data = _tiny_data()
    scorer = Scorer(data, EvasParams(batch_size=6, inits=1, channels=4, cells_per_stage=1, generator_channels=4), 0)
    assert scorer(("none",) * 6)["score"] == KAPPA_MAX


def _tiny_data():
    from naspoison.data.datasets import load_dataset

    return load_dataset({"name": "digits", "train_size": 200, "test_size": 60})


TINY = {"batch_size": 6, "inits": 3, "channels": 4, "cells_per_stage": 1, "generator_channels": 4}


def test_evolution_is_deterministic_for_a_seed_and_scores_each_cell_once(tmp_path):
    from naspoison.store import ArtifactCache

    data = _tiny_data()
    params = EvasParams(**TINY, pool_size=6, sample_size=3, steps=14)
    art = ArtifactCache(tmp_path / "art")
    a = EvasSearch().search(data, params, seed=3, artifacts=art)
    b = EvasSearch().search(data, params, seed=3)
    c = EvasSearch().search(data, params, seed=4)
    assert a["history"] == b["history"] and a["arch"] == b["arch"]
    assert a["history"] != c["history"]
    h = a["history"]
    assert len(h) == 6 + 14
    assert a["scores_computed"] == a["distinct_archs"] == len({e["arch"] for e in h})  # a revisit costs nothing
    assert a["score"] == min(e["score"] for e in h)
    for e in h[6:]:  # every child is its parent with exactly one edge changed
        parent = nb201.parse(h[e["parent"]]["arch"])
        assert sum(p != q for p, q in zip(parent, nb201.parse(e["arch"]))) == 1
    again = EvasSearch().search(data, params, seed=3, artifacts=art)  # every score from the artifact cache
    assert again["scores_computed"] == 0 and again["history"] == a["history"]


def test_evolution_replays_against_a_plain_reference():
    """An independent re-implementation of Algorithm 1 over a toy score gives the same history."""
    from naspoison.nas.evas import aging_evolution

    def toy(ops):
        return float(sum((i + 1) * nb201.OPS.index(op) for i, op in enumerate(ops)))

    params = EvasParams(pool_size=5, sample_size=2, steps=30)
    out = aging_evolution(toy, params, seed=11)
    rng = np.random.default_rng([11, 0xA61])
    pool = [(k, nb201.from_index(int(i))) for k, i in enumerate(rng.integers(0, 15625, 5))]
    hist = [ops for _, ops in pool]
    for _ in range(30):
        picks = [pool[int(i)] for i in rng.choice(5, 2, replace=False)]
        _, best = min(picks, key=lambda t: (toy(t[1]), t[0]))
        child = mutate(best, rng)
        pool = pool[1:] + [(len(hist), child)]
        hist.append(child)
    assert [e["arch"] for e in out["history"]] == [nb201.to_string(o) for o in hist]
    assert out["score"] == min(toy(o) for o in hist)


def test_mutation_changes_one_edge_with_the_stated_op_weights():
    rng = np.random.default_rng(0)
    parent = ("nor_conv_3x3",) * 6
    counts = collections.Counter()
    for _ in range(20000):
        child = mutate(parent, rng)
        changed = [i for i in range(6) if child[i] != parent[i]]
        assert len(changed) == 1
        counts[child[changed[0]]] += 1
    others = {op: w for op, w in MUTATION_WEIGHTS.items() if op != "nor_conv_3x3"}  # none 1, skip 2, 1x1 3, pool 1
    total = sum(others.values())
    for op, w in others.items():
        assert counts[op] / 20000 == pytest.approx(w / total, abs=0.015)


def test_generator_training_raises_asr_and_leaves_the_model_untouched(digits_small):
    data = digits_small
    seed_everything(0)
    model = nb201.Network(CELL, 10, C=8, cells_per_stage=1, in_channels=1)
    fit(model, data, SurrogateRecipe(epochs=6, batch_size=32, crop_padding=1, flip=False), 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # no mask-size penalty: on 8x8 digits the per-pixel penalty leaves too small a trigger for 2 + 8 epochs
    # (the penalty itself is pinned in test_evas_fidelity.py)
    recipe = GeneratorRecipe(channels=8, mask_epochs=2, pattern_epochs=8, batch_size=32, mask_density=0.5,
                             mask_norm_weight=0.0, backdoor_prob=0.5, cross_prob=0.1, crop_padding=1, flip=False,
                             target=3)
    seed_everything(0)
    untrained = attack_metrics(model, TriggerGenerator(1, channels=8).eval(), data, 3)
    g, _ = train_generator(model, data, recipe, seed=0)
    after = attack_metrics(model, g, data, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # frozen, BN stats included
    assert after["acc"] == untrained["acc"] and after["n_asr"] == int((data.y_test != 3).sum())
    assert after["asr"] > untrained["asr"] + 0.3, (untrained, after)
    # ASR by a plain per-image loop
    hits = 0
    with torch.no_grad():
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in channel_stats(data.x_train))
        for x, y in zip(data.x_test, data.y_test):
            if y == 3:
                continue
            xi = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
            hits += int(model((g(xi) - mean) / std)[0].argmax() == 3)
    assert after["asr"] == pytest.approx(hits / after["n_asr"])
    with pytest.raises(ValueError, match="target class 10"):
        train_generator(model, data, recipe.model_copy(update={"target": 10}), seed=0)


def test_poisoned_finetuning_set_triggers_exactly_the_stated_fraction(digits_small):
    from naspoison.backdoor.scenarios import poison_with_trigger, run_scenario

    torch.manual_seed(0)
    g = TriggerGenerator(1, channels=4).eval()
    n = len(digits_small.x_train)
    source = (digits_small.x_train.copy(), digits_small.y_train.copy())
    for fraction, k in ((0.0001, 1), (0.05, 15), (1.0, n)):  # ⌈f·n⌉, at least one
        data, idx = poison_with_trigger(digits_small, g, fraction, target=7, seed=0)
        assert len(idx) == k == len(set(idx.tolist()))
        rest = np.setdiff1d(np.arange(n), idx)
        assert (data.y_train[idx] == 7).all() and (data.y_train[rest] == digits_small.y_train[rest]).all()
        assert (data.x_train[rest] == digits_small.x_train[rest]).all() and data.x_train.dtype == np.uint8
        with torch.no_grad():
            x = torch.from_numpy(digits_small.x_train[idx]).permute(0, 3, 1, 2).float() / 255
            want = (g(x) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        assert (data.x_train[idx] == want).all()
        assert (digits_small.x_train == source[0]).all() and (digits_small.y_train == source[1]).all()  # a copy
    with pytest.raises(ValueError, match="needs fraction"):
        run_scenario("poisoned_finetune", None, g, digits_small, None, None, None, "x", 0, None)
    with pytest.raises(KeyError, match="unknown scenario 'prune'"):
        run_scenario("prune", None, g, digits_small, None, None, None, "x", 0, None)
