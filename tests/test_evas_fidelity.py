"""Evas fidelity (issue 19): the generator's loss terms against the reference formulas evaluated by hand on
small tensors, and the reference variants of the score, evolution, scenarios and defenses."""
import math

import pytest
import torch

from naspoison.backdoor import TriggerGenerator
from naspoison.backdoor.attack import GeneratorRecipe, mask_diversity, mask_norm_penalty, pattern_diversity


def test_mask_norm_penalty_is_per_pixel_relu_then_mean():
    # input-aware attack / trojanzoo: mean(relu(m − density)), by hand on four pixels
    m = torch.tensor([[[[0.0, 0.5], [0.1, 0.02]]]])
    hand = (0 + (0.5 - 0.032) + (0.1 - 0.032) + 0) / 4
    assert mask_norm_penalty(m, 0.032).item() == pytest.approx(hand)
    # a mask whose *mean* is under the density still pays for its one large pixel (relu(mean − d) would be 0)
    m = torch.tensor([[[[0.1, 0.0], [0.0, 0.0]]]])
    assert m.mean().item() < 0.032
    assert mask_norm_penalty(m, 0.032).item() == pytest.approx((0.1 - 0.032) / 4)


def test_vinai_mask_is_the_threshold_of_the_tanh_output():
    # VinAI: forward ends in tanh(raw)/(2 + 1e-7) + 0.5, threshold(u) = tanh(20u − 10)/(2 + 1e-7) + 0.5
    raw = torch.tensor([-3.0, -0.2, 0.0, 0.05, 0.3, 2.0])
    u = torch.tanh(raw) / 2 + 0.5
    hand = torch.tanh(20 * u - 10) / 2 + 0.5
    got = TriggerGenerator(1, "vinai").variant.squash_mask(raw)
    torch.testing.assert_close(got, hand)
    # the same function as trojanzoo's mask, and not the pre-fix (tanh(20·raw − 10) + 1)/2 (0 at raw = 0)
    torch.testing.assert_close(got, TriggerGenerator(1, "trojanzoo").variant.squash_mask(raw))
    assert got[2].item() == pytest.approx(0.5)
    assert ((torch.tanh(20 * raw - 10) + 1) / 2)[2].item() < 1e-8


def test_trojanzoo_pattern_diversity_is_triggered_distance_over_pattern_distance():
    g = TriggerGenerator(3, "trojanzoo", channels=4)
    shape = (1, 3, 2, 2)
    trig, cross = torch.zeros(shape), torch.full(shape, 0.5)   # ‖Δ‖₂ = √(12·0.25) = √3
    pat1, pat2 = torch.zeros(shape), torch.ones(shape)          # ‖Δ‖₂ = √12
    x1, x2 = torch.rand(shape), torch.rand(shape)               # the sources do not enter
    got = pattern_diversity(g, x1, x2, trig, cross, pat1, pat2, n_bd=1)
    assert got.item() == pytest.approx(math.sqrt(3) / (math.sqrt(12) + 1e-5))
    # pairs: backdoor row i with cross row i, truncated to the shorter of the two
    trig2 = torch.cat([trig, torch.full(shape, 9.0)])
    pat12 = torch.cat([pat1, torch.full(shape, 9.0)])
    assert pattern_diversity(g, x1, x2, trig2, cross, pat12, pat2, n_bd=2).item() == pytest.approx(got.item())
    # no cross row: the term is zero (the reference adds nothing)
    assert pattern_diversity(g, x1, x2, trig, cross[:0], pat1, pat2[:0], n_bd=1).item() == 0


def test_trojanzoo_mask_diversity_uses_l2_norms():
    g = TriggerGenerator(3, "trojanzoo", channels=4)
    x1, x2 = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)    # ‖Δx‖₂ = √12
    m1, m2 = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)  # ‖Δm‖₂ = 1
    got = mask_diversity(g, x1, x2, m1, m2).item()
    assert got == pytest.approx(math.sqrt(12) / (1 + 1e-5))
    assert got == pytest.approx(math.sqrt(3) * 2, rel=1e-4)  # √3 × the RMS ratio (1 / 0.5)


def test_vinai_diversity_is_rms_of_normalised_differences():
    g = TriggerGenerator(3, "vinai", channels=4, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    x1, x2 = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)    # normalised Δ = 2 everywhere: RMS 2
    m1, m2 = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)  # RMS 0.5
    assert mask_diversity(g, x1, x2, m1, m2).item() == pytest.approx(2 / (0.5 + 1e-7))
    p1, p2 = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.25)  # normalised Δ 0.5: RMS 0.5
    got = pattern_diversity(g, x1, x2, torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2), p1, p2, n_bd=1)
    assert got.item() == pytest.approx(2 / (0.5 + 1e-7))


def test_generator_recipe_optimiser_defaults_are_the_references():
    r = GeneratorRecipe()
    assert r.adam_betas == [0.5, 0.9] and r.lr_schedule == "cosine" and r.lr == 0.01
    with pytest.raises(ValueError):
        GeneratorRecipe(adam_betas=[0.5, 1.0])
    with pytest.raises(ValueError):
        GeneratorRecipe(lr_schedule="step")
