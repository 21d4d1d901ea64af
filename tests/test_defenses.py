"""Backdoor defenses on a planted BadNets backdoor (each must catch it) and on a clean model (no false
alarm beyond what is stated); the median/MAD rule on hand-computed values."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from naspoison.attacks.surrogate import SurrogateRecipe
from naspoison.backdoor.scenarios import FinetuneRecipe
from naspoison.defenses import DEFENSES, Suspect, anomaly_index, median
from naspoison.defenses.fine_pruning import FinePruningParams
from naspoison.defenses.neural_cleanse import NeuralCleanseParams
from naspoison.defenses.strip import StripParams
from naspoison.spaces import nb201
from naspoison.train import fit, seed_everything

TARGET = 0


def test_median_and_anomaly_index_by_hand():
    # odd count: median 3, |x − 3| = 2 1 0 1 97 → MAD 1
    assert median([4, 1, 3, 100, 2]) == 3 == np.median([4, 1, 3, 100, 2])
    assert anomaly_index([1, 2, 3, 4, 100]) == pytest.approx([2 / 1.4826, 1 / 1.4826, 0, 1 / 1.4826, 97 / 1.4826])
    # even count: the mean of the two middle values, median (12 + 14)/2 = 13; |x − 13| = 3 1 1 3 87 11 → MAD (3 + 3)/2 = 3
    l1 = [10, 12, 14, 16, 100, 2]
    assert median(l1) == 13 == np.median(l1)
    idx = anomaly_index(l1)
    assert idx[5] == pytest.approx(11 / (1.4826 * 3)) and idx[5] > 2 and idx[4] == pytest.approx(87 / 4.4478)
    assert idx[0] == pytest.approx(3 / 4.4478)
    # MAD 0: the equal ones score 0, the odd one out is infinitely anomalous
    assert anomaly_index([5, 5, 5, 1]) == [0, 0, 0, float("inf")]


def patch(x01: torch.Tensor) -> torch.Tensor:
    """BadNets: a white 3x3 square in the bottom-right corner (9 of the 256 pixels of a 16x16 digit)."""
    x = x01.clone()
    x[:, :, -3:, -3:] = 1.0
    return x


def _train(data, poison_fraction: float):
    data = replace(data)
    if poison_fraction:
        rng = np.random.default_rng(0)
        idx = rng.choice(len(data.x_train), int(poison_fraction * len(data.x_train)), replace=False)
        x, y = data.x_train.copy(), data.y_train.copy()
        x[idx, -3:, -3:, :] = 255
        y[idx] = TARGET
        data = replace(data, x_train=x, y_train=y)
    seed_everything(0)
    model = nb201.Network(nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|"
                                      "nor_conv_1x1~1|nor_conv_3x3~2|"), 10, C=16, cells_per_stage=1, in_channels=1)
    fit(model, data, SurrogateRecipe(epochs=12, batch_size=64, crop_padding=0, flip=False), 0)
    return model


@pytest.fixture(scope="module")
def models():
    from naspoison.data.datasets import load_dataset

    # digits upsampled to 16x16 (each pixel a 2x2 block): at 8x8 a 3x3 patch is as large as the masks that
    # turn one digit into another, so Neural Cleanse could not tell them apart whatever its seed
    digits = load_dataset({"name": "digits"})
    up = lambda x: np.repeat(np.repeat(x, 2, 1), 2, 2)
    clean_data = replace(digits, x_train=up(digits.x_train), x_test=up(digits.x_test))
    return clean_data, _train(clean_data, 0.1), _train(clean_data, 0.0)


def suspect(models, which):
    data, planted, clean = models
    return Suspect(planted if which == "planted" else clean, patch, data, TARGET, torch.device("cpu"))


def test_the_planted_backdoor_works_and_the_clean_model_has_none(models):
    planted, clean = suspect(models, "planted").acc_asr(), suspect(models, "clean").acc_asr()
    assert planted["asr"] > 0.95 and planted["acc"] > 0.9 and clean["acc"] > 0.9 and clean["asr"] < 0.2


NC = NeuralCleanseParams(epochs=40, samples=400, batch_size=50)


@pytest.mark.slow  # ~100 s each on 2 cores: run by .ci/run's slow pass
@pytest.mark.parametrize("seed", [0, 1])
def test_neural_cleanse_flags_the_planted_target(models, seed):
    out = DEFENSES["neural_cleanse"]().run(suspect(models, "planted"), NC.model_copy(update={"seed": seed}))
    assert out["target_flagged"] and out["target_index"] > 2, out  # the bar; seed 1 gives 2.83
    assert out["l1"][TARGET] == min(out["l1"]) and all(out["reached"])
    assert out["l1"][TARGET] < 0.5 * out["median_l1"]


@pytest.mark.slow
def test_neural_cleanse_on_the_clean_model(models):
    s = suspect(models, "clean")
    out = DEFENSES["neural_cleanse"]().run(s, NC)
    # stated false alarm: on a clean model a naturally easy class can cross 2 (digit 5 here, index ~2-4
    # depending on the start), as in the paper's own clean models; the would-be target is not (its mask is a
    # large one: an index above 2 on the large side is no alarm)
    # the would-be target is not flagged (whether its mask lands above or below the median depends on the
    # optimisation's float order, e.g. the thread count: not a property of Neural Cleanse)
    assert not out["target_flagged"], out
    assert min(out["l1"]) > 0.5 * out["median_l1"], out  # nothing as small as a planted patch's mask
    short = NC.model_copy(update={"epochs": 3})
    torch.manual_seed(1)
    first = DEFENSES["neural_cleanse"]().run(s, short)
    torch.manual_seed(2)  # seeded random start: the result is a function of the parameters, not the global RNG
    assert DEFENSES["neural_cleanse"]().run(s, short)["l1"] == first["l1"]


def test_strip_separates_triggered_inputs_on_the_planted_model_only(models):
    p = StripParams(overlays=30, inputs=150)
    planted = DEFENSES["strip"]().run(suspect(models, "planted"), p)
    clean = DEFENSES["strip"]().run(suspect(models, "clean"), p)
    assert planted["auroc"] > 0.9 and planted["entropy_triggered_mean"] < planted["entropy_clean_mean"], planted
    assert clean["auroc"] < 0.8, clean  # stated: no detection beyond chance-level separation on a clean model


def test_fine_pruning_curve_equals_masking_in_the_network_and_lowers_asr(models):
    s = suspect(models, "planted")
    p = FinePruningParams(samples=400, finetune=FinetuneRecipe(epochs=3, batch_size=64, crop_padding=0, flip=False))
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    out = DEFENSES["fine_pruning"]().run(s, p)
    assert all(torch.equal(before[k], v) for k, v in s.model.state_dict().items())  # a copy was fine-tuned
    # pruning the dormant channels lowers ASR within the 4-point ACC budget, and deeper pruning removes it;
    # (measured, not asserted: clean fine-tuning of the pruned copy brings this ASR back; see fine_pruning.py)
    assert out["before"]["asr"] > 0.95 and out["chosen"]["asr"] < 0.8 * out["before"]["asr"], out
    assert out["chosen"]["acc"] >= out["before"]["acc"] - 0.04
    assert any(c["asr"] < 0.05 and c["acc"] > 0.8 for c in out["curve"])
    assert [c["pruned"] for c in out["curve"]] == sorted(c["pruned"] for c in out["curve"])
    # a curve point recomputed by masking inside the network (a pre-hook), not on cached features
    from naspoison.defenses.fine_pruning import features, final_linear

    k = out["curve"][10]["pruned"]
    order = torch.argsort(features(s, s.images("train", np.sort(np.random.default_rng([0, 0xF9]).choice(
        len(s.data.x_train), 400, replace=False)))).mean(0), stable=True)
    mask = torch.ones(out["channels"])
    mask[order[:k]] = 0
    h = final_linear(s.model).register_forward_pre_hook(lambda m, inp: (inp[0] * mask,))
    try:
        direct = s.acc_asr()
    finally:
        h.remove()
    assert direct["acc"] == pytest.approx(out["curve"][10]["acc"]) and direct["asr"] == pytest.approx(out["curve"][10]["asr"])


def test_strip_positive_rules_on_the_planted_model(models):
    # both rules reported; "successful" keeps only correctly classified inputs whose trigger reaches the target
    s = suspect(models, "planted")
    out = DEFENSES["strip"]().run(s, StripParams(overlays=20, inputs=100, positives="successful"))
    assert out["auroc"] == out["auroc_successful"] and out["auroc_all"] is not None
    assert 0 < out["n_successful"] <= 100 and out["auroc_successful"] > 0.9, out
    with pytest.raises(ValueError):
        StripParams(positives="some")

