"""Poisoning countermeasures (poisoning paper Table 4): cluster relabeling and one-step diffusion
denoising, and the defended_search family end to end."""
import json

import numpy as np
import pytest
import torch
from conftest import naspoison

from naspoison.data.datasets import load_dataset
from naspoison.sanitize import SANITIZERS, Sanitized
from naspoison.sanitize.cluster_relabel import (
    ClusterRelabelParams,
    purity,
    renumber_by_size,
    resnet152_features,
)
from naspoison.sanitize.diffusion_denoise import (
    DiffusionDenoiseParams,
    denoise,
    load_denoiser,
    timestep_for,
)
from naspoison.store import ResultStore

PIXELS = ClusterRelabelParams(features="pixels_pca", pca_components=10)


def test_relabeling_gives_one_label_per_cluster_and_ignores_the_given_labels():
    data = load_dataset({"name": "digits", "train_size": 400, "test_size": 50})
    out = SANITIZERS["cluster_relabel"]().apply(data, PIXELS, seed=0, clean_labels=data.y_train)
    labels = out.y_train
    assert labels.shape == data.y_train.shape and set(np.unique(labels)) == set(range(10))
    # one label per KMeans cluster: refit the same clustering independently and compare partitions
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    feats = PCA(n_components=10, random_state=0).fit_transform(data.x_train.reshape(400, -1) / 255.0)
    km = KMeans(n_clusters=10, n_init=10, random_state=0).fit(feats).labels_
    for c in range(10):
        assert len(np.unique(labels[km == c])) == 1  # a cluster has one label ...
    assert len({int(labels[km == c][0]) for c in range(10)}) == 10  # ... and clusters have different ones
    assert np.bincount(labels).tolist() == sorted(np.bincount(labels).tolist(), reverse=True)  # numbered by size
    # flipping the given labels changes nothing: relabeling reads images only
    flipped = out.apply(data).__class__(**{**data.__dict__, "y_train": (data.y_train + 3) % 10})
    again = SANITIZERS["cluster_relabel"]().apply(flipped, PIXELS, seed=0)
    np.testing.assert_array_equal(again.y_train, labels)
    assert "test backend" in out.summary["features"] and 0.1 < out.summary["purity_vs_clean_labels"] <= 1.0
    # the artifact round-trips
    np.testing.assert_array_equal(Sanitized.from_bytes(out.to_bytes()).y_train, labels)


def test_renumbering_and_purity_by_hand():
    assert renumber_by_size(np.array([2, 2, 0, 1, 1, 1]), 3).tolist() == [1, 1, 2, 0, 0, 0]
    assert renumber_by_size(np.array([1, 0, 1, 0]), 2).tolist() == [0, 1, 0, 1]  # tie: the cluster seen first is 0
    # clusters {0,0,1} and {1,1}: majorities 2 + 2 of 5
    assert purity(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1])) == pytest.approx(4 / 5)


def test_relabeling_without_weights_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    x = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(FileNotFoundError, match=r"hub/checkpoints/resnet152-394f9c45\.pth"):
        resnet152_features(x, None, 2, "cpu")
    with pytest.raises(FileNotFoundError, match="my_weights.pth"):
        resnet152_features(x, str(tmp_path / "my_weights.pth"), 2, "cpu")


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp("unet")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    unet.save_pretrained(root / "unet")
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    return root


def test_one_step_denoising_inverts_exactly_with_the_true_noise():
    # a stand-in UNet that predicts the noise actually added recovers the image exactly
    alphas = np.linspace(0.9999, 0.5, 1000)
    t = timestep_for(0.1, alphas)
    ratio = np.sqrt((1 - alphas) / alphas)
    assert abs(ratio[t] - 0.2) == np.abs(ratio - 0.2).min()
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    clean = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1

    class Oracle:
        def __call__(self, xt, tt):
            a = alphas[t]
            return type("Out", (), {"sample": (xt - a ** 0.5 * clean) / (1 - a) ** 0.5})()

    np.testing.assert_array_equal(denoise(x, Oracle(), alphas, 0.1, seed=0, batch_size=8, device="cpu"), x)


def test_denoiser_plumbing_with_a_tiny_random_unet(tiny_unet):
    data = load_dataset({"name": "digits", "train_size": 40, "test_size": 10})
    p = DiffusionDenoiseParams(model=str(tiny_unet), sigma=0.1, batch_size=16)
    out = SANITIZERS["diffusion_denoise"]().apply(data, p, seed=0)
    assert out.x_train.shape == data.x_train.shape and out.x_test.shape == data.x_test.shape
    assert out.x_train.dtype == np.uint8 and out.y_train is None and out.summary["mean_abs_change_train"] > 0
    again = SANITIZERS["diffusion_denoise"]().apply(data, p, seed=0)
    np.testing.assert_array_equal(again.x_train, out.x_train)  # seeded noise
    with pytest.raises(ValueError, match="takes 1-channel 8 images"):
        SANITIZERS["diffusion_denoise"]().apply(load_dataset({"name": "photo_patches", "train_size": 4,
                                                              "test_size": 2}), p, seed=0)
    with pytest.raises(FileNotFoundError, match="no UNet2DModel"):
        load_denoiser(str(tiny_unet / "nowhere"))
    with pytest.raises(ValueError, match="needs model"):
        load_denoiser(None)


DEFENDED_SUITE = """\
version: 1
families:
  poisoning:
    attacks: [none, random_label_flip, gaussian_noise]
    budgets: [0.5]
    algorithms: [random, tenas]
  defended_search:
    algorithms: [random, tenas]
    defenses: {{cluster_relabel: [random_label_flip, gaussian_noise], diffusion_denoise: [gaussian_noise]}}
  random_baseline: {{}}
profiles:
  tiny:
    seeds: 2
    dataset: {{name: digits, train_size: 200, test_size: 60}}
    train: {{epochs: 1, batch_size: 64, init_channels: 4, layers: 3, crop_padding: 1, flip: false, cutout: 2}}
    algorithms:
      tenas: {{batch_size: 4, lr_batch_size: 100, lr_batches: 1, repeats: 1, prune_per_round: 7}}
    sanitize:
      cluster_relabel: {{features: pixels_pca, pca_components: 10}}
      diffusion_denoise: {{model: {model}, batch_size: 64}}
"""


@pytest.mark.slow
def test_defended_family_runs_shares_and_reports(tmp_path, tiny_unet):
    (tmp_path / "suite.yaml").write_text(DEFENDED_SUITE.format(model=tiny_unet))
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert run.returncode == 0, run.stdout + run.stderr
    store = ResultStore(tmp_path / "cache", read_only=True)
    records = [store.load_file(p) for p in store.iter_files()]
    sanitize = [r for r in records if r.stage == "sanitize"]
    poisons = {r.spec["params"]["attack"]: r.key for r in records if r.stage == "poison"}
    # relabeling after a label flip sees the clean images: no poison upstream; after noise, the noised set
    ups = sorted((r.spec["params"]["defense"], r.spec["upstream"]["poison"] or "") for r in sanitize)
    assert ups == sorted([("cluster_relabel", ""), ("cluster_relabel", poisons["gaussian_noise"]),
                          ("diffusion_denoise", poisons["gaussian_noise"])])
    defended = [r for r in records if r.stage == "search" and "sanitize" in r.spec["upstream"]]
    # random x 3 rows + tenas x 2 rows (no label-flip row: TE-NAS reads no labels), 2 seeds each
    assert len(defended) == 10
    assert all("sanitize" not in r.spec["upstream"] for r in records if r.stage == "search" and r not in defended)
    report = json.loads((tmp_path / "reports/tiny/report.json").read_text())
    rows = {(r["defense"], r["attack"], r["algorithm"]): r for r in report["defended"]["rows"]}
    assert set(rows) == {("cluster_relabel", "random_label_flip", "random"), ("cluster_relabel", "gaussian_noise", "random"),
                         ("diffusion_denoise", "gaussian_noise", "random"), ("cluster_relabel", "gaussian_noise", "tenas"),
                         ("diffusion_denoise", "gaussian_noise", "tenas")}
    # random reads no data: defended and undefended accuracies are the same, so no improvement can be shown
    r = rows["cluster_relabel", "random_label_flip", "random"]
    assert r["mean"] == r["undefended"]["mean"] and r["test"]["significant"] is False
    md = (tmp_path / "reports/tiny/report.md").read_text()
    assert "## Poisoning countermeasures" in md and "Cluster-based relabeling (Random label-flipping, 50%)" in md
    check = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--check")
    assert check.returncode == 0, check.stdout


def test_profile_without_a_denoiser_has_no_denoising_rows_and_says_so(tmp_path):
    text = DEFENDED_SUITE.format(model="null")
    (tmp_path / "suite.yaml").write_text(text)
    plan = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert plan.returncode == 0, plan.stderr
    assert "diffusion_denoise: this profile names no denoiser model" in plan.stdout.replace("\n", " ")
