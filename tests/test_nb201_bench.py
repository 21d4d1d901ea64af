"""NAS-Bench-201 (v1.0/v1.1 file) lookups through ``nas_201_api``, on a small file written here in that format:
a ``torch.save``d dict {meta_archs, arch2infos: {index: {'less': ArchResults, 'full': ArchResults}},
evaluated_indexes}, each ArchResults a dict {arch_index, arch_str, all_results: {(dataset, seed):
ResultsCount}, dataset_seed, clear_net_done}, each ResultsCount the attributes of one trial (per-epoch
accuracies keyed by epoch, evaluations keyed 'set@epoch'). No network, no real benchmark file."""
import pytest
import torch

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
B = "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def _trial(arch, seed, epochs, test_acc, train_acc):
    last = epochs - 1
    return {"name": "cifar10", "net_state_dict": None,
            "train_acc1es": {e: train_acc * (e + 1) / epochs for e in range(epochs)}, "train_acc5es": None,
            "train_losses": {e: 1.0 / (e + 1) for e in range(epochs)}, "train_times": None,
            "arch_config": {"arch_str": arch, "channel": 16, "num_cells": 5, "class_num": 10},
            "params": 0.1, "flop": 10.0, "seed": seed, "epochs": epochs, "latency": None,
            "eval_names": ["ori-test"], "eval_acc1es": {f"ori-test@{e}": test_acc if e == last else 10.0 for e in range(epochs)},
            "eval_times": {}, "eval_losses": {f"ori-test@{e}": 0.5 for e in range(epochs)}}


def _arch_results(index, arch, epochs, accs):
    return {"arch_index": index, "arch_str": arch, "clear_net_done": True,
            "all_results": {("cifar10", s): _trial(arch, s, epochs, t, 99.0) for s, t in accs.items()},
            "dataset_seed": {"cifar10": sorted(accs)}}


def _write(path):
    blob = {"meta_archs": [A, B], "evaluated_indexes": [0, 1],
            "arch2infos": {0: {"less": _arch_results(0, A, 12, {777: 80.0}),
                               "full": _arch_results(0, A, 200, {777: 93.5, 888: 93.9})},
                           1: {"less": _arch_results(1, B, 12, {777: 60.0}),
                               "full": _arch_results(1, B, 200, {888: 88.1})}}}
    torch.save(blob, path)


def test_nb201_lookup_reads_a_v1_file_by_arch_string(tmp_path):
    pytest.importorskip("nas_201_api")
    from naspoison.spaces import nats

    _write(tmp_path / "NAS-Bench-201-v1_0-e61699.pth")
    api = nats.open_nb201_api(tmp_path / "NAS-Bench-201-v1_0-e61699.pth")
    out = nats.lookup(api, A, "cifar10", "200", 888)
    assert out["test_accuracy"] == 93.9 and out["nb201_index"] == 0 and out["train_accuracy"] == 99.0
    assert nats.lookup(api, A, "cifar10", "12", 777)["test_accuracy"] == 80.0
    assert nats.lookup(api, B, "cifar10", "200", 888)["test_accuracy"] == 88.1
    with pytest.raises(LookupError, match="no record of .* seed 777"):
        nats.lookup(api, B, "cifar10", "200", 777)  # B has no trial 777 at 200 epochs
    with pytest.raises(KeyError, match="not in this NAS-Bench-201 file"):
        nats.lookup(api, A.replace("skip_connect~2", "none~2"), "cifar10", "200", 777)
    with pytest.raises(TypeError, match="trial seed explicitly"):
        nats.lookup(api, A, "cifar10", "200", True)


def test_nb201_open_refuses_what_is_not_a_benchmark_file(tmp_path):
    pytest.importorskip("nas_201_api")
    from naspoison.spaces import nats

    with pytest.raises(FileNotFoundError, match="NAS-Bench-201-v1_0-e61699.pth"):
        nats.open_nb201_api(tmp_path / "missing.pth")
    torch.save({"meta_archs": []}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a NAS-Bench-201 file"):
        nats.open_nb201_api(tmp_path / "other.pth")


def test_nb201_open_without_the_package_names_the_extra(monkeypatch, tmp_path):
    import sys

    from naspoison.spaces import nats

    monkeypatch.setitem(sys.modules, "nas_201_api", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="nas-bench-201 extra"):
        nats.open_nb201_api(tmp_path / "x.pth")
