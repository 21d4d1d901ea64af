"""Issue 18 (fidelity of the poisoning paper's algorithms and attacks): each rule against an independent
hand computation — the NAS-GC per-victim radius and its refusal of a no-op target, the random
baseline's samplers."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from naspoison.attacks.gradient_canceling import GCParams, GradPCParams, cancel_gradients
from naspoison.attacks.nas_gradient_canceling import NASGCParams, NASGradientCanceling, genotype_change
from naspoison.data.augment import DeviceImages, channel_stats
from naspoison.data.datasets import make_image_data
from naspoison.nas.random_search import (
    RandomParams,
    RandomSearch,
    duplicate_input_rate,
    sample_distinct,
    sample_reference,
)
from naspoison.spaces.darts import OP_NAMES, EvalNetwork, Genotype, sample_genotype


# ----------------------------------------------------------------------------- NAS-GC radius
class BiasNet(nn.Module):
    """logits = W·x + scale·alpha: ``alpha`` plays the small-norm architecture parameters."""

    def __init__(self, classes=3, scale=1.0, alpha0=1e-3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(classes, 4, generator=g))
        self.alpha = nn.Parameter(torch.full((classes,), alpha0) * torch.tensor([1.0, -1.0, 0.5])[:classes])
        self.scale = scale

    def forward(self, x):
        return x.flatten(1)[:, :4] @ self.w.T + self.scale * self.alpha, None


def _data(n=60, classes=3):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 2, 2, 1), dtype=np.uint8)
    y = rng.integers(0, classes, n)
    return make_image_data("toy", x, y, x, y, classes)


def _run(model, gp, steps=2):
    p = GCParams(steps=steps, lr=0.01, chunk_size=16, gradpc=gp)
    return cancel_gradients(model, [("alpha", model.alpha)], _data(), 0.2, p, np.random.default_rng(0))


def test_absolute_radius_moves_the_alphas_exactly_epsilon_along_the_loss_gradient():
    data = _data()
    model = BiasNet()
    a0 = model.alpha.detach().clone()
    mean, std = channel_stats(data.x_train)
    train = DeviceImages(data.x_train, data.y_train, "cpu", mean, std)
    with torch.no_grad():  # hand: ∂ mean CE / ∂α = mean(softmax − onehot) (logits = W·x + α)
        probs = F.softmax(model(train.normalise(train.x))[0], 1)
        g = (probs - F.one_hot(train.y, 3)).mean(0)
    # one full-batch step of length ε (step_fraction 1) in an absolute l2 ball of radius 1
    out = _run(model, GradPCParams(epsilon=1.0, relative=False, step_fraction=1.0, batch_size=60))
    t = out.summary["target"]
    assert t["radius"] == 1.0 and t["steps"] == 1 and t["distance"] == pytest.approx(1.0, rel=1e-6)
    torch.testing.assert_close(model.alpha.detach() - a0, g / g.norm(), rtol=1e-5, atol=1e-6)
    # relative: ε·‖α₀‖ by hand; ‖α₀‖ = 1e-3·sqrt(1 + 1 + 0.25) = 1.5e-3
    model = BiasNet(scale=1e3)
    out = _run(model, GradPCParams(epsilon=0.5, step_fraction=1.0, batch_size=60))
    assert out.summary["target"]["radius"] == pytest.approx(0.5 * 1.5e-3, rel=1e-6)


def test_a_target_numerically_identical_to_the_clean_model_is_refused_naming_the_parameter():
    # alphas of norm ~1e-6 seen through a 1e-3 scale: 0.005·‖α‖ moves the logits by ~1e-11
    model = BiasNet(alpha0=1e-6, scale=1e-3)
    with pytest.raises(ValueError, match=r"numerically identical.*alpha \(‖Δ‖₂.*relative: false"):
        _run(model, GradPCParams())
    # the same model under an absolute radius of 1.0 has an effect (moved logits by 1e-3): loss must rise
    model = BiasNet(alpha0=1e-6, scale=1.0)
    out = _run(model, GradPCParams(epsilon=1.0, relative=False))
    t = out.summary["target"]
    assert t["test_loss_after"] > t["test_loss_before"] and t["params"] == ["alpha"]


def test_nas_gc_radius_is_per_victim_and_the_key_holds_only_the_resolved_setting():
    p = NASGCParams()
    assert p.for_victim("pdarts").gradpc == GradPCParams(epsilon=1.0, relative=False)  # the authors' target
    assert p.for_victim("robot").gradpc == GradPCParams()                             # relative 0.005
    resolved = NASGradientCanceling.params_for_victim({"steps": 5}, "pdarts")
    assert resolved["gradpc"]["epsilon"] == 1.0 and resolved["gradpc"]["relative"] is False
    assert resolved["gradpc_by_victim"] == {}
    # resolving twice changes nothing (the poison cell re-validates the keyed params)
    assert NASGCParams.model_validate(resolved).for_victim("pdarts").model_dump() == resolved
    custom = NASGradientCanceling.params_for_victim({"gradpc_by_victim": {"tenas": {"epsilon": 0.1}}}, "tenas")
    assert custom["gradpc"]["epsilon"] == 0.1


def test_genotype_change_counts_changed_op_input_entries():
    a = sample_genotype(np.random.default_rng(0))
    normal = list(a.normal)
    normal[0] = ("skip_connect" if normal[0][0] != "skip_connect" else "max_pool_3x3", normal[0][1])
    normal[5] = (normal[5][0], (normal[5][1] + 1) % 4)  # node 4 (edges 4, 5) may read inputs 0..3
    b = Genotype(tuple(normal), a.normal_concat, a.reduce, a.reduce_concat)
    out = genotype_change({"genotype": a.to_dict()}, {"genotype": b.to_dict()})
    assert out == {"normal": 2, "reduce": 0, "total": 2}


# ----------------------------------------------------------------------------- random baseline samplers
def test_distinct_sampler_is_the_spaces_sampler_draw_for_draw():
    for seed in range(20):
        assert sample_distinct(np.random.default_rng(seed)) == sample_genotype(np.random.default_rng(seed))


def test_reference_sampler_duplicate_input_rate_matches_the_analytic_expectation():
    rng = np.random.default_rng(123)
    draws = [sample_reference(rng) for _ in range(10_000)]
    expected = float(sum(Fraction(1, j + 2) for j in range(4)) / 4)  # node j reads one of j+2 states
    assert expected == pytest.approx(0.3208, abs=1e-4)
    se = np.sqrt(expected * (1 - expected) / (8 * len(draws)))
    assert abs(duplicate_input_rate(draws) - expected) < 4 * se
    # per node: 1/(j+2), and every input lies among the node's predecessors
    for j in range(4):
        same = np.mean([c[2 * j][1] == c[2 * j + 1][1] for g in draws for c in (g.normal, g.reduce)])
        assert same == pytest.approx(1 / (j + 2), abs=4 * np.sqrt(0.25 / (2 * len(draws))))
        assert all(0 <= c[2 * j + e][1] < j + 2 for g in draws[:500] for c in (g.normal, g.reduce) for e in (0, 1))
    ops = {op for g in draws[:2000] for op, _ in g.normal + g.reduce}
    assert ops == set(OP_NAMES[1:])  # all seven non-none ops
    assert duplicate_input_rate([sample_distinct(rng) for _ in range(500)]) == 0.0


def test_a_genotype_with_a_repeated_input_builds_and_runs():
    g = Genotype((("sep_conv_3x3", 1), ("max_pool_3x3", 1)) * 4, (2, 3, 4, 5),
                 (("skip_connect", 0), ("avg_pool_3x3", 0)) * 4, (2, 3, 4, 5))
    net = EvalNetwork(g, 4, 3, 10, in_channels=3, auxiliary=False, image_size=8)
    logits, _ = net(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_random_search_uses_the_named_sampler():
    data = _data()
    ours = RandomSearch().search(data, RandomParams(), 7)
    ref = RandomSearch().search(data, RandomParams(sampler="reference"), 7)
    assert Genotype.from_dict(ours["genotype"]) == sample_genotype(np.random.default_rng(7))
    assert Genotype.from_dict(ref["genotype"]) == sample_reference(np.random.default_rng(7))
    with pytest.raises(ValueError):
        RandomParams.model_validate({"sampler": "uniform"})


# ----------------------------------------------------------------------------- precision, paper profile values
def test_precision_is_part_of_the_recipe_key_and_bf16_autocast_only_when_asked():
    from naspoison import stages
    from naspoison.store import content_key
    from naspoison.train import Recipe, autocast_for

    g = sample_genotype(np.random.default_rng(0)).to_dict()
    ds = {"name": "digits", "train_size": None, "test_size": None, "subset_seed": 0}
    fp32 = content_key(stages.train_spec(g, Recipe().model_dump(), ds, 0))
    bf16 = content_key(stages.train_spec(g, Recipe(precision="bf16").model_dump(), ds, 0))
    assert Recipe().precision == "fp32" and fp32 != bf16
    lin = nn.Linear(4, 2)
    x = torch.randn(3, 4)
    with autocast_for(torch.device("cpu"), "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with autocast_for(torch.device("cpu")):
        assert lin(x).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        autocast_for(torch.device("cpu"), "fp16")


def _paper_profile():
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "suite.yaml").read_text())["profiles"]["paper"]


def test_paper_profile_runs_the_reference_values():
    prof = _paper_profile()
    # ztcoalson/pdarts run_search.sh: --dropout_rate 0.1 --dropout_rate 0.4 --dropout_rate 0.7
    assert prof["algorithms"]["pdarts"]["skip_dropout"] == [0.1, 0.4, 0.7]
    assert prof["algorithms"]["random"]["sampler"] == "reference"
    assert prof["train"]["precision"] == "fp32" and prof["algorithms"]["pdarts"]["precision"] == "fp32"
    from naspoison.nas.robot import RoBoTParams

    robot = RoBoTParams.model_validate(prof["algorithms"]["robot"])
    assert (robot.init_points, robot.max_bo_iterations, robot.queries, robot.metric_layers) == (1, 25, 25, 5)
    q = robot.query_train
    assert (q.batch_size, q.lr, q.lr_min, q.drop_path_prob, q.layers, q.crop_padding, q.flip) == \
        (576, 0.1, 0.005, 0.2, 5, 0, False)
    nas_gc = NASGCParams.model_validate(prof["attacks"]["nas_gradient_canceling"])
    assert nas_gc.for_victim("pdarts").gradpc == GradPCParams(epsilon=1.0, relative=False)
