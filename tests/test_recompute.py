"""``naspoison verify --recompute``: recomputing stored cells catches a change of results made without a
stage-version bump (the stale cache ``--check`` still calls fine)."""
import numpy as np

from naspoison.cli import main
from naspoison.run import recompute


def _bench(d, only):
    assert main(["bench", str(d / "suite.yaml"), "--profile", "tiny", "--only", only, "--store", str(d / "store"),
                 "--artifacts", str(d / "art"), "--reports", str(d / "reports")]) == 0


def _verify(d, *extra, n=2):
    return main(["verify", "--recompute", str(n), "--suite", str(d / "suite.yaml"), "--profile", "tiny",
                 "--store", str(d / "store"), *extra])


def test_recompute_catches_a_result_change_without_a_version_bump(tiny, monkeypatch, capsys):
    from naspoison.attacks.random_label_flip import RandomLabelFlip

    d = tiny(seeds=1, epochs=1)
    _bench(d, "family=poisoning,attack=random_label_flip")
    capsys.readouterr()
    assert _verify(d, "--stages", "poison", "--only", "attack=random_label_flip") == 0
    out = capsys.readouterr().out
    assert out.count("identical (exact") == 2 and "2 identical" in out, out  # same machine: bits required

    real = RandomLabelFlip.poison

    def changed(self, data, budget, params, rng, device="cpu", ctx=None):
        p = real(self, data, budget, params, rng, device, ctx)
        p.labels = (p.labels + 1) % data.num_classes  # "a refactor": other labels, same stage version
        p.summary["new_label_histogram"] = np.bincount(p.labels, minlength=data.num_classes).tolist()
        return p

    monkeypatch.setattr(RandomLabelFlip, "poison", changed)
    assert _verify(d, "--stages", "poison", "--only", "attack=random_label_flip") == 1
    out = capsys.readouterr().out
    assert out.count(": DIFFERS (exact") == 2 and "new_label_histogram" in out and "FAILED" in out, out
    # the stored cells are untouched: --check still passes, which is why recomputing is needed
    assert main(["bench", str(d / "suite.yaml"), "--profile", "tiny", "--only", "attack=random_label_flip",
                 "--store", str(d / "store"), "--check"]) == 0


def test_a_train_cell_change_is_caught_and_the_cheapest_cells_come_first(tiny, monkeypatch, capsys):
    from naspoison import train

    d = tiny(seeds=1, epochs=1)
    _bench(d, "family=poisoning,attack=none")
    capsys.readouterr()
    real = train.fit

    def nudged(*a, **k):  # a float-level change: one test image more or less in the accuracy
        out = real(*a, **k)
        out["test_acc"] += 1 / out["n_test"]
        return out

    monkeypatch.setattr(train, "fit", nudged)
    assert _verify(d, "--stages", "train") == 1
    assert "$.test_acc" in capsys.readouterr().out
    # cheapest first: the random search (no training) before the train cell, the change is not in it
    assert _verify(d, "--only", "attack=none", n=1) == 0
    assert "ok   search/" in capsys.readouterr().out


def test_tolerance_mode_and_diff():
    assert recompute.diff({"a": [1.0, 2.0], "b": "x"}, {"a": [1.0, 2.0 + 1e-9], "b": "x"}, 1e-6, 0.0)[0] == []
    errs, worst = recompute.diff({"a": [1.0, 2.0], "b": "x"}, {"a": [1.0, 2.1], "b": "y"}, 1e-6, 0.0)
    assert len(errs) == 2 and abs(worst - 0.1) < 1e-12
    p = {"device": "cpu", "cpu_model": "X", "threads": 1, "torch": "2", "numpy": "2"}
    assert recompute.same_platform(p, dict(p)) and not recompute.same_platform(p, {**p, "threads": 2})
    assert not recompute.same_platform({"device": "cpu"}, {"device": "cpu"})  # unknown: not assumed the same


def test_whether_an_upstream_artifact_was_recomputed_is_provenance_not_result():
    """Seen on the demo: a NAS-GC poison recomputed into a scratch store (no cached victim weights) differed from
    the stored cell only in ``victim.recomputed``; that is a fact about the machine's artifact cache."""
    from naspoison.store.timings import split_timings

    stored = {"poisoned": [1, 2], "victim": {"seed": 0, "recomputed": False, "clean_test_acc": 0.9}}
    again = {"poisoned": [1, 2], "victim": {"seed": 0, "recomputed": True, "recomputed_test_acc": 0.9,
                                            "clean_test_acc": 0.9}}
    (a, ta), (b, tb) = split_timings(stored), split_timings(again)
    assert a == b == {"poisoned": [1, 2], "victim": {"seed": 0, "clean_test_acc": 0.9}}
    assert ta == {"victim.recomputed": False} and tb["victim.recomputed"] is True
