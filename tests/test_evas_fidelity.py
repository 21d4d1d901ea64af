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


# --------------------------------------------------------------------------- score regime (item 4)
def _cell():
    from naspoison.spaces import nb201

    return nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|")


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_coupled_ntk_equals_one_backward_per_logit_of_the_whole_batch(chunk):
    from naspoison.backdoor.score import trigger_ntk_coupled
    from naspoison.nas.metrics import named_weights
    from naspoison.spaces import nb201

    torch.manual_seed(0)
    model = nb201.Network(_cell(), num_classes=4, C=4, cells_per_stage=1, in_channels=3).train()
    x = torch.rand(6, 3, 8, 8)
    fast = trigger_ntk_coupled(model, x, chunk)
    # the definition: one train-mode forward of the batch; J_i row k = d out[i, k] / d weights, through the
    # batch statistics; Θ = mean_i J_i J_iᵀ
    params = named_weights(model)
    out = model(x)[0]
    slow = torch.zeros(4, 4, dtype=torch.float64)
    for i in range(6):
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[i, k], params, retain_graph=True)]).double()
                for k in range(4)]
        j = torch.stack(rows)
        slow += j @ j.T
    torch.testing.assert_close(fast, slow / 6, rtol=1e-5, atol=1e-9)


def test_coupled_ntk_in_eval_mode_is_the_per_sample_ntk():
    from naspoison.backdoor.score import trigger_ntk, trigger_ntk_coupled
    from naspoison.spaces import nb201

    torch.manual_seed(1)
    model = nb201.Network(_cell(), num_classes=5, C=4, cells_per_stage=1, in_channels=3).eval()
    x = torch.rand(5, 3, 8, 8)
    torch.testing.assert_close(trigger_ntk_coupled(model, x, 2), trigger_ntk(model, x, 2), rtol=1e-5, atol=1e-9)


def test_reference_regime_generator_is_nearly_the_affine_half_blend():
    # eval mode with reset running statistics: at init the raw outputs are small, so m ≈ p ≈ 0.5 and
    # x' ≈ 0.5·x + 0.25 for every input (what the Evas reference scores with)
    from naspoison.backdoor.score import reset_generator, triggered

    torch.manual_seed(0)
    g = TriggerGenerator(3, "trojanzoo", channels=32)
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        ref = reset_generator(g)(x)
    ours = triggered(g, x)
    dev_ref, dev_ours = (ref - (0.5 * x + 0.25)).abs().mean(), (ours - (0.5 * x + 0.25)).abs().mean()
    assert dev_ref < 0.1 and dev_ours > 3 * dev_ref, (dev_ref, dev_ours)


def test_score_regimes_are_named_and_restore_modes():
    from naspoison.backdoor.score import trigger_ntk_cond

    torch.manual_seed(0)
    from naspoison.spaces import nb201

    model = nb201.Network(_cell(), num_classes=4, C=4, cells_per_stage=1, in_channels=3)
    g = TriggerGenerator(3, channels=4)
    x = torch.rand(6, 3, 8, 8)
    k_ours = trigger_ntk_cond(model, g, x, lambda v: v, 3, "ours")
    k_ref = trigger_ntk_cond(model, g, x, lambda v: v, 3, "reference")
    assert k_ours > 1 and k_ref > 1 and k_ours != k_ref
    assert model.training and g.training  # both as they were
    with pytest.raises(ValueError, match="unknown score regime 'train'"):
        trigger_ntk_cond(model, g, x, lambda v: v, 3, "train")


# --------------------------------------------------------------------------- evolution variant (item 7)
def test_reference_evolution_picks_parents_from_the_first_sample_size_slots():
    from naspoison.nas.evas import EvasParams, aging_evolution
    from naspoison.spaces import nb201

    p = EvasParams(pool_size=12, sample_size=4, steps=60, evolution="reference", reference_pool_range=20)
    out = aging_evolution(lambda ops: float(nb201.to_index(ops) % 97), p, seed=3)
    h = out["history"]
    init = h[:12]
    assert len({e["arch"] for e in init}) == 12 and all(nb201.to_index(nb201.parse(e["arch"])) < 20 for e in init)
    # ages: all start at 0 and the replaced slot's age resets, so slots are replaced round-robin 0, 1, ...;
    # slot j at child step t holds the latest earlier child born into slot j, else the initial member j
    for t, child in enumerate(h[12:]):
        slots = []
        for j in range(12):
            born = [s for s in range(t) if s % 12 == j]
            slots.append(h[12 + born[-1]]["step"] if born else j)
        assert child["parent"] in slots[:4], (t, child["parent"], slots[:4])
    assert out["score"] == min(e["score"] for e in h)


# --------------------------------------------------------------------------- poisoned fine-tuning (item 6)
class _SpyTrigger(torch.nn.Module):
    """Paints the whole image white and records what it was asked to trigger."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, source=None):
        self.calls.append((len(x), source is not None))
        return torch.ones_like(x)


def test_per_batch_poisoning_adds_fresh_triggered_and_cross_rows(digits_small):
    from naspoison.backdoor.scenarios import FinetuneRecipe, fit_per_batch_poison
    from naspoison.spaces import nb201

    torch.manual_seed(0)
    model = nb201.Network(_cell(), 10, C=4, cells_per_stage=1, in_channels=1)
    spy = _SpyTrigger()
    recipe = FinetuneRecipe(epochs=1, batch_size=20, poison_mode="per_batch", cross_fraction=0.1, crop_padding=1,
                            flip=False)
    out = fit_per_batch_poison(model, spy, digits_small, recipe, 0.25, target=7, seed=0, device="cpu")
    batches = len(digits_small.x_train) // 20  # 300 / 20, all full
    # 0.25·20 = 5 and 0.1·20 = 2 exactly: every batch gets 5 own-trigger rows and 2 cross rows
    assert out["n_triggered_rows"] == 5 * batches and out["n_cross_rows"] == 2 * batches
    assert spy.calls == [(5, False), (2, True)] * batches
    # a fractional count is rounded up with the fractional part's probability: 0.01·20 = 0.2 rows a batch
    spy.calls.clear()
    out = fit_per_batch_poison(model, spy, digits_small, recipe.model_copy(update={"epochs": 4}), 0.01, 7, 0, "cpu")
    assert 0 < out["n_triggered_rows"] < 4 * batches / 2  # expected 0.2·60 = 12
    assert out["n_triggered_rows"] == sum(n for n, cross in spy.calls if not cross)


def test_finetune_poison_mode_is_validated():
    from naspoison.backdoor.scenarios import FinetuneRecipe

    assert FinetuneRecipe().poison_mode == "fixed_set"
    with pytest.raises(ValueError):
        FinetuneRecipe(poison_mode="online")


# --------------------------------------------------------------------------- Neural Cleanse reference schedule (item 8)
def test_neural_cleanse_reference_schedule_step_by_step():
    # bolunwang/backdoor Visualizer.visualize, epoch by epoch with patience 2, early-stop patience 2:
    # the cost is set after 2 successful epochs, raised after 2 more, lowered after 2 failing ones; the early
    # stop waits until it has been both raised and lowered
    from naspoison.defenses.neural_cleanse import NeuralCleanseParams, _reference_update

    p = NeuralCleanseParams(patience=2, early_stop_patience=2, init_cost=1e-3, cost_multiplier=1.5,
                            schedule="reference")
    cost, active = torch.zeros(1), torch.ones(1, dtype=torch.bool)
    st = dict(cost_set=[False], up=[0], down=[0], best_l1=[math.inf], best_ok=[False],
              best_mask=torch.zeros(1, 1, 2, 2), stale=[0])
    ref = {"es_best": [math.inf], "set_count": [0], "raised": [False], "lowered": [False]}

    def epoch(ok, l1, fill):
        _reference_update(0, p, ok, l1, torch.full((1, 2, 2), fill), cost, st["cost_set"], st["up"], st["down"],
                          st["best_l1"], st["best_ok"], st["best_mask"], st["stale"], active, ref)

    epoch(True, 10.0, 0.1)
    assert cost.item() == 0  # one success: not yet
    epoch(True, 9.0, 0.2)
    assert cost.item() == pytest.approx(1e-3) and st["best_l1"] == [9.0]
    epoch(True, 9.0, 0.3)  # no 1 % improvement: stale 1; second success since the cost was set: raised
    assert cost.item() == pytest.approx(1.5e-3) and ref["raised"] == [True] and st["stale"] == [1]
    epoch(False, 8.0, 0.4)
    epoch(False, 8.0, 0.5)  # stale 3 but never lowered yet at the check; lowered after it
    assert bool(active[0]) and ref["lowered"] == [True]
    assert cost.item() == pytest.approx(1.5e-3 / 1.5 ** 1.5)
    epoch(True, 9.5, 0.6)  # raised and lowered, stale ≥ 2: stop
    assert not bool(active[0])
    assert st["best_l1"] == [9.0] and st["best_mask"][0, 0, 0, 0].item() == pytest.approx(0.2)  # best, not last
    # a class that never succeeds keeps its last mask
    cost, active = torch.zeros(1), torch.ones(1, dtype=torch.bool)
    st = dict(cost_set=[False], up=[0], down=[0], best_l1=[math.inf], best_ok=[False],
              best_mask=torch.zeros(1, 1, 2, 2), stale=[0])
    ref = {"es_best": [math.inf], "set_count": [0], "raised": [False], "lowered": [False]}
    for fill in (0.1, 0.05, 0.7):
        epoch(False, 5.0, fill)
    assert st["best_mask"][0, 0, 0, 0].item() == pytest.approx(0.7) and cost.item() == 0


def test_evas_search_defaults_are_the_papers():
    from naspoison.nas.evas import EvasParams

    p = EvasParams()  # Evas §3.4 / search_genetic.py: pool 50, sample 10, 4000 steps
    assert (p.pool_size, p.sample_size, p.steps) == (50, 10, 4000)


def test_generator_row_counts_are_the_floor_of_p_times_the_batch():
    from naspoison.backdoor.attack import GeneratorRecipe, row_counts

    assert row_counts(GeneratorRecipe(), 96) == (9, 9)  # ⌊0.1·96⌋ = 9, not 9.6 rounded
    assert row_counts(GeneratorRecipe(backdoor_prob=0.25, cross_prob=0.5), 10) == (2, 5)


def test_clean_finetuning_recipe_is_the_papers():
    from naspoison.backdoor.scenarios import FinetuneRecipe

    f = FinetuneRecipe()  # Evas §4: 50 epochs, SGD lr 0.01 (cosine), batch 96; the trainer's momentum 0.9, wd 5e-4
    assert (f.epochs, f.lr, f.batch_size, f.momentum, f.weight_decay) == (50, 0.01, 96, 0.9, 5e-4)


def test_scenarios_report_the_final_model_not_a_best_epoch(monkeypatch):
    import naspoison.backdoor.scenarios as sc

    model = torch.nn.Linear(1, 1)
    seen = []

    class Fake(sc.Scenario):
        name, title = "fake", "fake"

        def run(self, model, *a):  # three "epochs"; the reference would report the best of them
            for w in (0.9, 0.1, 0.5):
                model.weight.data.fill_(w)
                seen.append(w)
            return {}

    monkeypatch.setitem(sc.SCENARIOS, "fake", Fake)
    monkeypatch.setattr(sc, "attack_metrics", lambda m, *a: {"acc": float(m.weight), "asr": float(m.weight)})
    gen = torch.nn.Linear(1, 1)
    out = sc.run_scenario("fake", model, gen, None, type("R", (), {"eval_batch_size": 1})(), None,
                          type("G", (), {"target": 0})(), "arch", 0, None)
    assert seen == [0.9, 0.1, 0.5] and out["asr"] == 0.5


def test_strip_overlays_and_entropy_in_bits():
    from naspoison.defenses.strip import StripParams, entropy

    assert StripParams().overlays == 100  # the STRIP paper's N
    k = 10

    class Uniform:  # constant logits: every blend's softmax is uniform, entropy log2(k) bits
        @staticmethod
        def logits(x):
            return torch.zeros(len(x), k)

    h = entropy(Uniform(), torch.rand(3, 1, 4, 4), torch.rand(5, 1, 4, 4), 4, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.as_tensor(h).float(), torch.full((3,), math.log2(k)), atol=1e-5)
