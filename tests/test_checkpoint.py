"""In-cell checkpoints (naspoison.run.checkpoint): a cell killed with ``kill -9`` resumes from its last
checkpoint and stores the bits of an uninterrupted run; checkpoints never unpickle and go once the cell
is stored."""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from naspoison import stages
from naspoison.run import checkpoint
from naspoison.run.cell import run_stage
from naspoison.stages.artifacts_io import weights_key
from naspoison.store import ArtifactCache, ResultStore, canonical_json, content_key

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = {"name": "digits", "train_size": 300, "test_size": 100, "subset_seed": 0}
RECIPE = {"epochs": 9, "batch_size": 32, "init_channels": 4, "layers": 3, "crop_padding": 1, "flip": False,
          "cutout": 2, "drop_path_prob": 0.2}


def _train_spec(epochs=RECIPE["epochs"]):
    from naspoison.spaces.darts import sample_genotype

    return stages.train_spec(sample_genotype(np.random.default_rng(5)).to_dict(), {**RECIPE, "epochs": epochs},
                             DATASET, seed=2)


def test_round_trip_keeps_types_and_bits():
    obj = {"epoch": 3, "curves": {"loss": [0.1, 1 / 3], "x": [None]}, 7: (1, 2.5, "a", True),
           "bf16": torch.randn(3, dtype=torch.bfloat16), "arr": np.arange(4, dtype=np.int64), "e": torch.empty(0)}
    back = checkpoint.loads(checkpoint.dumps(obj))
    assert back["epoch"] == 3 and back["curves"] == obj["curves"] and back[7] == (1, 2.5, "a", True)
    assert back["bf16"].dtype == torch.bfloat16 and torch.equal(back["bf16"], obj["bf16"])
    assert np.array_equal(back["arr"], obj["arr"]) and back["e"].numel() == 0
    with pytest.raises(TypeError):
        checkpoint.dumps({"f": object()})


def test_loading_never_unpickles_python_objects():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    torch.save({"__skeleton__": torch.zeros(1, dtype=torch.uint8), "x": Evil()}, buf)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|unsupported"):
        checkpoint.loads(buf.getvalue())


def test_rng_states_round_trip():
    import random

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    s = checkpoint.loads(checkpoint.dumps(checkpoint.rng_state()))
    a = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    checkpoint.set_rng_state(s)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


SCRIPT = textwrap.dedent("""
    import json, sys
    from naspoison.run import checkpoint
    from naspoison.run.cell import run_stage
    from naspoison.stages import STAGES, StageContext
    from naspoison.store import ArtifactCache, ResultStore

    store, art = ResultStore(sys.argv[1]), ArtifactCache(sys.argv[2])
    spec, ds = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    checkpoint.bind(art)
    real_save = checkpoint.Loop.save_if_due

    def save_if_due(self, state, final=False):  # called once per finished epoch (the test set is read once)
        print("epoch done", flush=True)
        saved = real_save(self, state, final)
        if saved:
            print("saved", state()["epoch"], flush=True)
        return saved

    checkpoint.Loop.save_if_due = save_if_due
    run_stage(store, spec, lambda d: STAGES["train"].compute(spec, {}, StageContext(ds, art, d)), "cpu")
    print("stored", flush=True)
""")


def _run(tmp_path, spec, wait=True):
    script = tmp_path / "cell.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", checkpoint.EVERY_ENV: "0"}
    cmd = [sys.executable, str(script), str(tmp_path / "store"), str(tmp_path / "art"), json.dumps(spec),
           json.dumps(DATASET)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_mid_run_resumes_and_gives_the_uninterrupted_bits(tmp_path):
    spec = _train_spec()
    # the uninterrupted run, in this process, without checkpoints
    ref_store = ResultStore(tmp_path / "ref")
    os.environ[checkpoint.EVERY_ENV] = "off"
    try:
        train = stages.STAGES["train"].compute
        reference = run_stage(ref_store, spec, lambda d: train(spec, {}, stages.StageContext(DATASET, None, d)), "cpu")
    finally:
        del os.environ[checkpoint.EVERY_ENV]

    proc = _run(tmp_path, spec)
    done_before_kill, last_saved = 0, None
    for line in proc.stdout:
        done_before_kill += line.startswith("epoch done")
        if line.startswith("saved"):
            last_saved = int(line.split()[1])
            if last_saved >= 3:
                time.sleep(0.05)  # into the next epoch
                os.kill(proc.pid, signal.SIGKILL)
                break
    rest = proc.stdout.read()  # lines printed before the kill landed
    proc.wait()
    done_before_kill += rest.count("epoch done")
    last_saved = max([last_saved] + [int(x.split()[1]) for x in rest.splitlines() if x.startswith("saved")])
    assert proc.returncode == -signal.SIGKILL and "stored" not in rest, rest
    assert not ResultStore(tmp_path / "store").has("train", content_key(spec))

    rerun = _run(tmp_path, spec)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    rec = ResultStore(tmp_path / "store").get("train", content_key(spec))
    resumed = rec.provenance["checkpoint"]["resumed"]
    assert resumed == [{"loop": 0, "name": "fit", "epoch": last_saved}]
    computed_again = out.count("epoch done")
    assert last_saved + computed_again == RECIPE["epochs"]
    recomputed = done_before_kill - last_saved  # finished before the kill, lost, computed again
    assert 0 <= recomputed <= 1  # the interval is 0 s: a save after every epoch
    print(f"kill -9 after {done_before_kill} epochs, resumed at {last_saved}: {recomputed} recomputed")
    assert canonical_json(rec.result) == canonical_json(reference)  # bit-identical
    art = ArtifactCache(tmp_path / "art")
    assert checkpoint.keys(art) == []  # removed once the cell is stored
    assert art.get(weights_key(spec)) is not None


def test_replays_finished_loops_and_resumes_the_running_one(tmp_path, digits_small):
    """Two loops in one cell (like RoBoT's query trainings): a checkpoint of the second restores the global RNG,
    the first is replayed from its saved final state; orphans (stored cells) are found for gc."""
    from naspoison.spaces.darts import sample_genotype
    from naspoison.train import Recipe, train_genotype

    r = Recipe(**{**RECIPE, "epochs": 3})
    g1, g2 = sample_genotype(np.random.default_rng(1)), sample_genotype(np.random.default_rng(2))

    def cell():
        return [train_genotype(g, digits_small, r, seed=4)["curves"] for g in (g1, g2)] + [torch.rand(2).tolist()]

    reference = cell()
    art = ArtifactCache(tmp_path / "art")
    checkpoint.bind(art)
    spec = {"stage": "search", "key": "x"}
    os.environ[checkpoint.EVERY_ENV] = "0"
    try:
        with checkpoint.cell(spec, "k" * 64) as c:
            assert cell() == reference
            assert sorted(checkpoint.keys(art)) == [f"ckpt/search/{'k' * 64}/0", f"ckpt/search/{'k' * 64}/1"]
        # a rerun: both loops were saved at their end, nothing is trained again, same numbers
        with checkpoint.cell(spec, "k" * 64) as c:
            assert cell() == reference
            assert [x["epoch"] for x in c.log["resumed"]] == [3, 3]
        store = ResultStore(tmp_path / "store")
        assert checkpoint.orphans(art, store) == []
        store.put({"stage": "search", "version": "1", "params": {}, "upstream": {}}, {"a": 1})
        stored_key = content_key({"stage": "search", "version": "1", "params": {}, "upstream": {}})
        art.put(f"ckpt/search/{stored_key}/0", b"x")
        assert checkpoint.orphans(art, store) == [f"ckpt/search/{stored_key}/0"]
    finally:
        del os.environ[checkpoint.EVERY_ENV]
        checkpoint.bind(None)


def test_interval_setting():
    for raw, want in (("", 600.0), ("0", 0.0), ("12.5", 12.5), ("off", None)):
        os.environ[checkpoint.EVERY_ENV] = raw
        try:
            assert checkpoint.interval() == want
        finally:
            del os.environ[checkpoint.EVERY_ENV]
    os.environ[checkpoint.EVERY_ENV] = "-1"
    try:
        with pytest.raises(ValueError, match="seconds"):
            checkpoint.interval()
    finally:
        del os.environ[checkpoint.EVERY_ENV]


def test_pdarts_interrupted_in_its_second_stage_resumes_to_the_same_search(tmp_path, digits_small):
    from naspoison.nas.pdarts import PDARTS, PDARTSParams

    params = PDARTSParams(cells=[3, 3], ops_kept=[3, 1], skip_dropout=[0.0, 0.4], epochs=3, warmup_epochs=1,
                          batch_size=32, init_channels=2, search_size=120, crop_padding=1, flip=False)
    reference = PDARTS().search(digits_small, params, seed=1)

    class Killed(Exception):
        pass

    def die(m):
        if m["stage"] == 1 and m["epoch"] == 2:  # its epoch-1 state is saved, epoch 2 is lost
            raise Killed

    checkpoint.bind(ArtifactCache(tmp_path / "art"))
    os.environ[checkpoint.EVERY_ENV] = "0"
    try:
        with pytest.raises(Killed), checkpoint.cell({"stage": "search"}, "p" * 64):
            PDARTS().search(digits_small, params, seed=1, on_epoch=die)
        with checkpoint.cell({"stage": "search"}, "p" * 64) as c:
            resumed = PDARTS().search(digits_small, params, seed=1)
        # stage 1 replayed from its final state, stage 2 resumed after its second epoch
        assert [(x["loop"], x["epoch"]) for x in c.log["resumed"]] == [(0, 3), (1, 2)]
    finally:
        del os.environ[checkpoint.EVERY_ENV]
        checkpoint.bind(None)
    assert canonical_json(resumed) == canonical_json(reference)


class _Killed(Exception):
    pass


def _interrupted_then_resumed(tmp_path, monkeypatch, fn, kill_after_saves: int):
    """fn() once plainly, once killed right after its ``kill_after_saves``-th checkpoint, once resumed."""
    reference = fn()
    checkpoint.bind(ArtifactCache(tmp_path / "art"))
    monkeypatch.setenv(checkpoint.EVERY_ENV, "0")
    real, count = checkpoint.Loop.save_if_due, [0]

    def dying(self, state, final=False):
        saved = real(self, state, final)
        count[0] += saved
        if count[0] == kill_after_saves:
            raise _Killed
        return saved

    try:
        monkeypatch.setattr(checkpoint.Loop, "save_if_due", dying)
        with pytest.raises(_Killed), checkpoint.cell({"stage": "poison"}, "g" * 64):
            fn()
        monkeypatch.setattr(checkpoint.Loop, "save_if_due", real)
        with checkpoint.cell({"stage": "poison"}, "g" * 64) as c:
            resumed = fn()
    finally:
        checkpoint.bind(None)
    return reference, resumed, c.log["resumed"]


CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|"


def test_gradient_canceling_steps_resume_to_the_same_poison(tmp_path, monkeypatch, digits_small):
    from naspoison.attacks.gradient_canceling import GCParams, GradPCParams, cancel_gradients
    from naspoison.spaces import nb201

    def gc():
        torch.manual_seed(0)
        model = nb201.Network(nb201.parse(CELL), 10, C=4, cells_per_stage=1, in_channels=1)
        p = GCParams(steps=6, lr=0.02, chunk_size=50, gradpc=GradPCParams(epsilon=0.05))
        out = cancel_gradients(model, list(model.named_parameters()), digits_small, 0.1, p, np.random.default_rng(0))
        return out.images.tolist(), out.summary

    reference, resumed, log = _interrupted_then_resumed(tmp_path, monkeypatch, gc, kill_after_saves=4)
    assert [(x["name"], x["epoch"]) for x in log] == [("gc_steps", 4)]
    assert resumed == reference


def test_trigger_generator_training_resumes_to_the_same_generator(tmp_path, monkeypatch, digits_small):
    from naspoison.backdoor.attack import GeneratorRecipe, train_generator
    from naspoison.spaces import nb201

    recipe = GeneratorRecipe(channels=4, mask_epochs=2, pattern_epochs=3, batch_size=32, mask_density=0.5,
                             backdoor_prob=0.5, cross_prob=0.1, crop_padding=1, flip=False, target=3)

    def generator():
        torch.manual_seed(0)
        model = nb201.Network(nb201.parse(CELL), 10, C=4, cells_per_stage=1, in_channels=1)
        g, info = train_generator(model, digits_small, recipe, seed=0)
        return {k: v.tolist() for k, v in g.state_dict().items()}, info

    # killed after the mask phase and one pattern epoch: the mask phase replays, the pattern phase resumes
    reference, resumed, log = _interrupted_then_resumed(tmp_path, monkeypatch, generator, kill_after_saves=3)
    assert [(x["name"], x["epoch"]) for x in log] == [("generator_mask", 2), ("generator_pattern", 1)]
    assert resumed == reference


def test_neural_cleanse_resumes_to_the_same_masks(tmp_path, monkeypatch, digits_small):
    from naspoison.defenses.base import Suspect
    from naspoison.defenses.neural_cleanse import NeuralCleanseParams, reverse_engineer
    from naspoison.spaces import nb201

    # a low threshold and short patiences: costs are set, raised and lowered, classes stop early
    p = NeuralCleanseParams(epochs=8, samples=60, batch_size=30, attack_threshold=0.2, patience=1,
                            early_stop_patience=2)

    def nc():
        torch.manual_seed(0)
        model = nb201.Network(nb201.parse(CELL), 10, C=4, cells_per_stage=1, in_channels=1)
        out = reverse_engineer(Suspect(model, lambda x: x, digits_small, 3, torch.device("cpu")), p)
        return {**out, "masks": out["masks"].tolist()}

    reference, resumed, log = _interrupted_then_resumed(tmp_path, monkeypatch, nc, kill_after_saves=3)
    assert [(x["name"], x["epoch"]) for x in log] == [("neural_cleanse", 3)]
    assert resumed == reference and reference["epochs"] > 3


def test_gc_removes_checkpoints_of_stored_cells_only(tmp_path, capsys):
    from naspoison.cli import main

    store = ResultStore(tmp_path / "store")
    spec = {"stage": "train", "version": "1", "params": {"x": 1}, "upstream": {}}
    store.put(spec, {"test_acc": 0.5})
    art = ArtifactCache(tmp_path / "art")
    stored, running = f"ckpt/train/{content_key(spec)}/0", f"ckpt/train/{'r' * 64}/0"
    art.put(stored, b"x")
    art.put(running, b"y")
    art.close()
    args = ["gc", "--store", str(tmp_path / "store"), "--artifacts", str(tmp_path / "art")]
    assert main([*args, "--dry-run"]) == 0 and "would remove checkpoint of a stored cell" in capsys.readouterr().out
    assert sorted(checkpoint.keys(ArtifactCache(tmp_path / "art"))) == sorted([stored, running])
    assert main(args) == 0
    assert checkpoint.keys(ArtifactCache(tmp_path / "art")) == [running]  # a cell still being computed keeps its own
