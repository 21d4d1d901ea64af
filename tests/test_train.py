import numpy as np
import pytest

from naspoison.data.datasets import load_dataset
from naspoison.spaces.darts import sample_genotype
from naspoison.train import Recipe, train_genotype

TINY = Recipe(epochs=2, batch_size=64, init_channels=4, layers=3, crop_padding=1, flip=False, cutout=2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset({"name": "digits", "train_size": 300, "test_size": 100})


def test_same_seed_same_numbers_on_cpu(digits):
    g = sample_genotype(np.random.default_rng(0))
    a = train_genotype(g, digits, TINY, seed=3)
    b = train_genotype(g, digits, TINY, seed=3)
    assert a["curves"] == b["curves"] and a["test_acc"] == b["test_acc"]
    c = train_genotype(g, digits, TINY, seed=4)
    assert c["curves"]["train_loss"] != a["curves"]["train_loss"]


def test_reports_the_final_epoch_not_the_best(digits):
    out = train_genotype(sample_genotype(np.random.default_rng(1)), digits, TINY.model_copy(update={"epochs": 3}), 0)
    assert out["test_acc"] == out["curves"]["test_acc"][-1]
    assert len(out["curves"]["test_acc"]) == 3
    # cosine schedule from lr down towards 0, logged per epoch
    lrs = out["curves"]["lr"]
    assert lrs[0] == pytest.approx(0.025) and lrs[0] > lrs[1] > lrs[2]
    assert lrs[1] == pytest.approx(0.025 * (1 + np.cos(np.pi / 3)) / 2)


def test_test_set_evaluated_at_the_final_epoch_only_gives_the_same_result(digits):
    """Evaluation draws no random numbers and leaves the weights alone, so skipping it before the last
    epoch (the train cells do: only the final epoch is reported) changes nothing but the test curve."""
    from naspoison.train import fit, seeded_eval_network

    g, recipe = sample_genotype(np.random.default_rng(2)), TINY.model_copy(update={"epochs": 3})
    every = fit(seeded_eval_network(g, digits, recipe, 5), digits, recipe, 5)
    final = fit(seeded_eval_network(g, digits, recipe, 5), digits, recipe, 5, test_every_epoch=False)
    assert final["test_acc"] == every["test_acc"] == every["curves"]["test_acc"][-1]
    assert final["curves"]["test_acc"] == [None, None, every["test_acc"]]
    assert final["curves"]["train_loss"] == every["curves"]["train_loss"]


def test_recipe_defaults_are_the_published_ones():
    r = Recipe()
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.weight_decay, r.grad_clip) == (600, 128, 0.025, 0.9, 3e-4, 5.0)
    assert (r.init_channels, r.layers, r.auxiliary_weight, r.drop_path_prob, r.cutout) == (36, 20, 0.4, 0.3, 16)


def test_digits_is_the_embedded_dataset():
    d = load_dataset({"name": "digits"})
    assert d.x_train.dtype == np.uint8 and d.shape == (8, 8, 1) and d.num_classes == 10
    assert len(d.x_train) + len(d.x_test) == 1797 and d.x_train.max() == 255


def test_compiled_training_step_gives_the_eager_numbers(digits, monkeypatch):
    """``--compile`` plumbing: the step goes through torch.compile (the eager backend here, so the kernels
    and hence the numbers are the eager ones; inductor is what a GPU run would use)."""
    import torch

    from naspoison.run import machine

    g = sample_genotype(np.random.default_rng(0))
    eager = train_genotype(g, digits, TINY, seed=3)
    calls = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, backend: calls.append(backend) or real(m, backend=backend))
    with machine.using(compile="eager"):
        compiled = train_genotype(g, digits, TINY, seed=3)
    assert calls == ["eager"]
    train_genotype(g, digits, TINY, seed=3)  # the setting ended with its block
    assert calls == ["eager"]
    assert compiled["curves"]["train_loss"] == pytest.approx(eager["curves"]["train_loss"], rel=1e-5)
    assert compiled["test_acc"] == eager["test_acc"]
