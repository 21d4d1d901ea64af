import numpy as np
import pytest

from naspoison.data.datasets import DATASETS, load_dataset
from naspoison.stages import dataset_identity


def test_npz_dataset_round_trips_user_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 5, 5, 3), dtype=np.uint8)
    y = rng.integers(0, 4, 30)
    np.savez(tmp_path / "mine.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    d = load_dataset({"name": "npz", "path": str(tmp_path / "mine.npz")})
    assert np.array_equal(d.x_train, x[:20]) and np.array_equal(d.y_test, y[20:]) and d.shape == (5, 5, 3)


def test_grey_npz_gets_a_channel_axis(tmp_path):
    np.savez(tmp_path / "g.npz", x_train=np.zeros((4, 6, 6), np.uint8), y_train=[0, 1, 0, 1],
             x_test=np.zeros((2, 6, 6), np.uint8), y_test=[0, 1])
    assert load_dataset({"name": "npz", "path": str(tmp_path / "g.npz")}).shape == (6, 6, 1)


def test_npz_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset({"name": "npz", "path": str(tmp_path / "nope.npz")})
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="lacks"):
        load_dataset({"name": "npz", "path": str(tmp_path / "partial.npz")})
    np.savez(tmp_path / "float.npz", x_train=np.zeros((2, 4, 4)), y_train=[0, 1], x_test=np.zeros((1, 4, 4)), y_test=[0])
    with pytest.raises(ValueError, match="uint8"):
        load_dataset({"name": "npz", "path": str(tmp_path / "float.npz")})


def test_torchvision_dataset_absent_offline_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR10 not found under"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})


def test_subsets_are_seeded_and_sized():
    a = load_dataset({"name": "digits", "train_size": 100, "test_size": 50})
    b = load_dataset({"name": "digits", "train_size": 100, "test_size": 50, "subset_seed": 1})
    assert len(a.x_train) == 100 and len(a.x_test) == 50
    assert not np.array_equal(a.x_train, b.x_train)


def test_machine_specific_settings_are_not_part_of_the_key():
    a = {"name": "cifar10", "root": "/data", "download": True, "path": None, "train_size": None, "test_size": None,
         "subset_seed": 0}
    b = {**a, "root": "/other", "download": False}
    assert dataset_identity(a) == dataset_identity(b)


def test_registry_names():
    assert {"digits", "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "npz"} <= set(DATASETS)


SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_demo.npz"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside this checkout")
def test_real_cifar10_slice_trains_above_chance():
    from naspoison.spaces.darts import DARTS_V2
    from naspoison.train import Recipe, train_genotype

    d = load_dataset({"name": "npz", "path": str(SHARED)})
    assert d.shape == (32, 32, 3) and len(d.x_train) == 500 and np.bincount(d.y_train).tolist() == [50] * 10
    out = train_genotype(DARTS_V2, d, Recipe(epochs=3, batch_size=50, init_channels=4, layers=3), seed=0)
    assert out["test_acc"] > 0.15  # 10 classes: chance is 0.10


def test_imagenet16_120_reads_nats_files_and_refuses_code(tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    want = {}
    for i, name in enumerate([f"train_data_batch_{k}" for k in range(1, 11)] + ["val_data"]):
        data = rng.integers(0, 256, (6, 3 * 16 * 16), dtype=np.uint8)
        labels = [1, 120, 121, 500, 7, 1000]  # 1-based over 1000 classes; 121.. are not in the 120-class subset
        with open(tmp_path / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "mean": rng.random(3)}, f)
        want[name] = data
    d = load_dataset({"name": "imagenet16_120", "root": str(tmp_path)})
    assert d.x_train.shape == (10 * 3, 16, 16, 3) and d.x_test.shape == (3, 16, 16, 3) and d.num_classes == 120
    assert d.y_test.tolist() == [0, 119, 6]
    # channel-planar rows become HWC images: pixel (r, c) of channel k is data[k·256 + 16·r + c]
    first = want["train_data_batch_1"][0]
    assert d.x_train[0, 2, 5, 1] == first[256 + 16 * 2 + 5]
    with open(tmp_path / "val_data", "wb") as f:
        pickle.dump({"data": __import__("os").getcwd, "labels": []}, f)  # a callable: not an array
    from naspoison.data import datasets

    datasets._CACHE.clear()  # the loader memoises per process
    with pytest.raises(ValueError, match="refusing to load"):
        load_dataset({"name": "imagenet16_120", "root": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="train_data_batch_1"):
        load_dataset({"name": "imagenet16_120", "root": str(tmp_path / "nowhere")})
