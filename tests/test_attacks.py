import numpy as np
import pytest

from naspoison.attacks import ATTACKS, Poison, poison_count
from naspoison.attacks.base import NoParams
from naspoison.attacks.gaussian_noise import GaussianNoiseParams
from naspoison.data.datasets import make_image_data


def toy(n=2000, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 6, 6, 3), dtype=np.uint8)
    x[:50] = 0      # dark and bright images exercise the pixel-range clip
    x[50:100] = 255
    return make_image_data("toy", x, rng.integers(0, classes, n), x[:10], rng.integers(0, classes, 10), classes)


@pytest.mark.parametrize("budget, n, k", [(0.01, 2000, 20), (0.1, 1437, 144), (0.5, 1437, 719), (1.0, 7, 7)])
def test_poison_count_is_p_times_n_rounded(budget, n, k):
    assert poison_count(budget, n) == k


def test_budget_that_selects_nothing_is_an_error():
    with pytest.raises(ValueError, match="selects 0 samples"):
        poison_count(0.001, 100)


def test_random_label_flip_changes_exactly_pn_labels_and_never_keeps_one():
    data = toy()
    p = ATTACKS["random_label_flip"]().poison(data, 0.5, NoParams(), np.random.default_rng(1))
    out = p.apply(data)
    changed = np.flatnonzero(out.y_train != data.y_train)
    assert len(out.y_train) == len(data.y_train)            # poisons replace, never append
    assert np.array_equal(changed, p.indices) and len(changed) == 1000
    assert np.array_equal(out.x_train, data.x_train)        # labels only


def test_random_label_flip_is_uniform_over_the_other_classes():
    # independent check: the offset y' - y mod C must be uniform on 1..C-1
    data = toy(n=20000, classes=5)
    p = ATTACKS["random_label_flip"]().poison(data, 1.0, NoParams(), np.random.default_rng(2))
    offsets = (p.labels - data.y_train[p.indices]) % 5
    counts = np.bincount(offsets, minlength=5)
    assert counts[0] == 0
    from scipy.stats import chisquare
    assert chisquare(counts[1:]).pvalue > 1e-3


def test_gaussian_noise_respects_the_integer_linf_bound_and_pixel_range():
    data = toy()
    params = GaussianNoiseParams()
    p = ATTACKS["gaussian_noise"]().poison(data, 0.5, params, np.random.default_rng(3))
    out = p.apply(data)
    diff = out.x_train.astype(int) - data.x_train.astype(int)
    assert np.abs(diff).max() <= 16                          # 16/255 in pixel levels
    assert p.summary["linf_max_pixels"] <= p.summary["linf_bound_pixels"] == 16
    untouched = np.setdiff1d(np.arange(len(diff)), p.indices)
    assert not diff[untouched].any()
    assert np.array_equal(out.y_train, data.y_train)         # clean-label
    # reference: delta = clip(round(16 * N(0,1)), -16, 16); its std is well below 16 and above 10
    d = diff[p.indices][(data.x_train[p.indices] > 20) & (data.x_train[p.indices] < 235)]
    ref = np.clip(np.rint(16 * np.random.default_rng(9).standard_normal(200000)), -16, 16)
    assert abs(d.std() - ref.std()) < 0.2 and abs(d.mean()) < 0.1


def test_poison_round_trips_through_plain_npz_bytes():
    data = toy()
    for name, params in (("gaussian_noise", GaussianNoiseParams()), ("random_label_flip", NoParams())):
        p = ATTACKS[name]().poison(data, 0.1, params, np.random.default_rng(4))
        q = Poison.from_bytes(p.to_bytes())
        assert np.array_equal(q.apply(data).x_train, p.apply(data).x_train)
        assert np.array_equal(q.apply(data).y_train, p.apply(data).y_train)


def test_same_seed_same_poison():
    data = toy()
    a = ATTACKS["gaussian_noise"]().poison(data, 0.1, GaussianNoiseParams(), np.random.default_rng(5))
    b = ATTACKS["gaussian_noise"]().poison(data, 0.1, GaussianNoiseParams(), np.random.default_rng(5))
    assert a.to_bytes() == b.to_bytes()
