"""benchmarks/gpu_check.py (issue 22) at CPU sizes, so the one command prepared for a GPU never rots: every stage
end to end through ``naspoison bench``, the speed and numerics measurements, the bf16/fp32 switch, the time guard."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
NPZ = next((p for p in (REPO / "shared" / "data" / "cifar10_subset.npz",
                        REPO.parent / "shared" / "data" / "cifar10_subset.npz",
                        Path("/work/shared/data/cifar10_subset.npz")) if p.exists()), None)
needs_data = pytest.mark.skipif(NPZ is None, reason="the CIFAR-10 subset (shared/data/cifar10_subset.npz) is absent")


def gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_script(tmp_path, *args, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NASPOISON_ARTIFACTS": str(tmp_path / "artifacts")}
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--npz", str(NPZ), "--out", str(out),
                        "--workdir", str(tmp_path / "work"), *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_with_precision_sets_the_training_autocast(precision, dtype):
    """The one switch the bf16/fp32 comparison goes through: a matmul inside the training loop's autocast comes
    out in the asked precision, whether the recipe has a ``precision`` field or not (before and after issue 18)."""
    import naspoison.train as T

    recipe, ctx = gpu_check_module().with_precision(T.Recipe(epochs=1), precision)
    before = T.autocast_for
    with ctx:
        args = (recipe.precision,) if "precision" in type(recipe).model_fields else ()
        with T.autocast_for(torch.device("cpu"), *args):
            y = torch.ones(4, 4) @ torch.ones(4, 4)
    assert y.dtype == dtype
    assert T.autocast_for is before  # restored


def _progress(workdir, precision, seed, accs, final=True):
    rec = {"precision": precision, "seed": seed, "test_acc": accs, "train_loss": [1.0] * len(accs)}
    if final:
        rec["final_test_acc"] = accs[-1]
    (workdir / f"parity_{precision}_{seed}.json").write_text(json.dumps(rec))


def test_parity_judgement_against_a_hand_computed_bound(tmp_path):
    """bf16 vs fp32 'within seed noise': |mean difference| <= max(1 point, 2 standard errors of the difference)."""
    gc = gpu_check_module()
    for seed, (a, b) in enumerate([(0.80, 0.78), (0.81, 0.775), (0.79, 0.785)]):
        _progress(tmp_path, "fp32", seed, [0.5, a])
        _progress(tmp_path, "bf16", seed, [0.5, b])
    ctx = {"workdir": str(tmp_path), "parity_floor": 1.0, "defaults": {"parity": {"judge": True, "seeds": 3, "epochs": 2}}}
    part = gc.Part(tmp_path / "parity.json")
    gc.collect_parity(ctx, part)
    out = part.data["results"]["parity"]
    # fp32 80, 81, 79 (variance 1); bf16 78, 77.5, 78.5 (variance 0.25): SE = sqrt(1/3 + 0.25/3)
    bound = 2 * math.sqrt(1 / 3 + 0.25 / 3)
    assert out["mean_fp32"] == pytest.approx(80) and out["mean_bf16"] == pytest.approx(78)
    assert out["bound_pp"] == pytest.approx(bound) and not out["ok"]  # a 2-point gap is more than 1.29
    assert part.data["failures"] == [f"parity: bf16 vs fp32 mean accuracy differs by -2.00 pp > {bound:.2f} pp"]


def test_parity_unfinished_runs_are_compared_at_their_common_epoch(tmp_path):
    gc = gpu_check_module()
    _progress(tmp_path, "fp32", 0, [0.30, 0.40], final=False)
    _progress(tmp_path, "bf16", 0, [0.31], final=False)
    ctx = {"workdir": str(tmp_path), "parity_floor": 1.0, "defaults": {"parity": {"judge": True, "seeds": 1, "epochs": 20}}}
    part = gc.Part(tmp_path / "parity.json")
    gc.collect_parity(ctx, part)
    at = part.data["results"]["parity"]["at_common_epoch"]
    assert at["epoch"] == 1 and at["mean_acc_pct"] == pytest.approx({"fp32": 30.0, "bf16": 31.0})
    assert any("no fp32/bf16 pair finished" in f for f in part.data["failures"])


@needs_data
@pytest.mark.slow
def test_time_cap_kills_a_section_and_the_budget_skips_the_rest(tmp_path):
    """A section that outlasts its cap is killed (with its worker processes); the JSON is still written and says
    so, the section after it is not started once the budget is spent, and the exit status is 1."""
    r, rep = run_script(tmp_path, "--sections", "speed,numerics", "--budget", "8", timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert rep["sections"]["speed"]["status"] == "timeout" and not rep["ok"]
    assert rep["not_run"] == ["numerics"]
    assert "speed: timed out after 8 s (partial results kept)" in rep["failures"]
    assert "numerics: not run (budget spent)" in rep["failures"]
    assert "FAILURES (2)" in r.stdout


@needs_data
@pytest.mark.slow
def test_gpu_check_cpu_run(tmp_path):
    # generous caps: on a loaded CI machine a cap must not decide the test (the run takes ~1-2 min on 2 idle cores)
    r, rep = run_script(tmp_path, "--cap-scale", "5")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert rep["ok"] and rep["failures"] == []
    assert "PASS" in r.stdout and "wrote" in r.stdout

    # 1. every stage of the pipeline (the store's own list) has cells, each computed on the device asked for
    from naspoison.stages import VERSIONS

    bench = rep["sections"]["bench"]["results"]
    assert set(bench["stages"]) == set(VERSIONS)
    assert all(s["cells"] >= 1 and s["devices"] == ["cpu"] for s in bench["stages"].values())
    assert bench["bench_exit"] == bench["check_exit"] == bench["report_exit"] == 0
    assert (tmp_path / "work" / "bench" / "report_out" / "report.json").exists()

    # 2. speed: images/s are the image count over the recorded epoch times; ratios are quotients of those
    speed = rep["sections"]["speed"]["results"]
    n = speed["retrain_setup"]["n_train"]
    compiled = rep["sections"]["compile"]["results"]["retrain"]
    assert set(compiled) == {"fit_fp32_compiled", "fit_bf16_compiled"}
    for v in compiled.values():  # the step really went through torch.compile, and the count was taken every epoch
        assert len(v["graphs_after_epoch"]) == speed["retrain_setup"]["epochs"] and v["graphs_after_epoch"][-1] >= 1
    retrain = {**speed["retrain"], **compiled}
    assert set(retrain) == {"plain_fp32", "fit_fp32_eager", "fit_bf16_eager", "fit_fp32_compiled", "fit_bf16_compiled"}
    for name, v in retrain.items():
        assert len(v["epoch_seconds"]) == speed["retrain_setup"]["epochs"]
        assert v["img_s_steady"] == pytest.approx(n / min(v["epoch_seconds"][1:]), rel=0.01)  # fastest after the 1st
        # "seconds" is rounded to the millisecond: the relative error that allows grows as the run gets shorter
        assert v["img_s_whole"] == pytest.approx(n * len(v["epoch_seconds"]) / v["seconds"],
                                                 rel=max(1e-3, 6e-4 / v["seconds"]))
        if name != "plain_fp32":
            assert v["ratio_steady_vs_plain"] == pytest.approx(v["img_s_steady"] / retrain["plain_fp32"]["img_s_steady"])
    p = speed["pdarts_epoch"]
    assert p["ratio"] == pytest.approx(p["plain_s"] / p["lean_s"]) and p["lean_s"] > 0
    k = speed["ntk_kappa"]
    assert k["ratio"] == pytest.approx(k["naive_per_candidate_s"] / k["product_per_candidate_s"])

    # 3. numerics: the relative differences are |fp32 - float64| / float64 of the recorded values, under 1e-4
    num = rep["sections"]["numerics"]["results"]
    kap = num["kappa"]
    assert kap["default"]["rel_diff"] == pytest.approx(abs(kap["default"]["kappa_fp32"] - kap["kappa_cpu_float64"])
                                                       / kap["kappa_cpu_float64"])
    assert kap["default"]["rel_diff"] <= 1e-4 and 1 <= kap["kappa_cpu_float64"] < 1e12
    for row in num["evas_score"]["archs"]:
        got, ref = row["default"]["kappas_fp32"], row["kappas_cpu_float64"]
        assert row["default"]["max_rel_diff"] == pytest.approx(max(abs(a - b) / b for a, b in zip(got, ref)))
        assert row["default"]["max_rel_diff"] <= 1e-4

    # 4. parity: both precisions trained to the end; the final accuracy is the last epoch's
    par = rep["sections"]["parity"]["results"]["parity"]
    assert set(par["runs"]) == {"fp32_seed0", "bf16_seed0"}
    for run in par["runs"].values():
        assert run["final_test_acc"] == run["test_acc"][-1] and 0 <= run["final_test_acc"] <= 1
        assert all(math.isfinite(x) for x in run["train_loss"])
    assert par["diff_pp"] == pytest.approx(par["mean_bf16"] - par["mean_fp32"])
