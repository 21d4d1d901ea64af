"""End to end through suite -> store -> run -> report, on the embedded digits (CPU, seconds)."""
import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import naspoison

from naspoison.store import ResultStore


def computed(out: str) -> dict:
    """Cells a run computed, from its one-line-per-finished-cell log."""
    counts = {}
    for stage in re.findall(r"^\[\d+/\d+ trials\] (\w+)", out, flags=re.MULTILINE):
        counts[stage] = counts.get(stage, 0) + 1
    return counts


def files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("*/*.json"))}


def test_run_rerun_check_and_report(tiny):
    d = tiny(seeds=2, epochs=1)
    first = naspoison(d, "bench", "suite.yaml", "--profile", "tiny")
    assert first.returncode == 0, first.stdout + first.stderr
    # 2 attacks x 2 budgets poison cells; 5 rows x 2 seeds searches (baseline reuses the clean ones);
    # random genotypes depend on the seed only, so 2 networks are trained and shared by every row
    assert computed(first.stdout) == {"poison": 4, "search": 10, "train": 2}
    report = json.loads((d / "reports/tiny/report.json").read_text())
    assert report["baseline"]["n"] == 2 and report["corrections"]["random"]["n_tests"] == 4
    clean = next(r for r in report["rows"] if r["attack"] == "none")
    # the data-free control: every poisoned row equals the no-attack row
    assert all(r["mean"] == clean["mean"] for r in report["rows"])
    for ext in ("md", "csv", "tex"):
        assert (d / f"reports/tiny/report.{ext}").stat().st_size > 0

    before = files(d / "cache")
    again = naspoison(d, "bench", "suite.yaml", "--profile", "tiny")
    assert again.returncode == 0 and computed(again.stdout) == {}
    assert files(d / "cache") == before

    check = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check")
    assert check.returncode == 0, check.stdout
    assert "16 cells verified" in check.stdout

    plan = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert plan.returncode == 0 and "estimated device time of missing cells: 0.00 h" in plan.stdout

    # a new seed costs only its own cells, and the plan says so before running
    text = (d / "suite.yaml").read_text().replace("seeds: 2", "seeds: 3")
    (d / "suite.yaml").write_text(text)
    plan = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert re.search(r"search\s*│\s*5\s*│\s*10", plan.stdout), plan.stdout
    assert "no timings" not in plan.stdout and "untimed" not in plan.stdout  # seeds 0-1 timed the same cells
    more = naspoison(d, "bench", "suite.yaml", "--profile", "tiny")
    assert computed(more.stdout) == {"search": 5, "train": 1}

    # a changed report is caught by --check, which writes nothing
    rj = d / "reports/tiny/report.json"
    rj.write_text(rj.read_text().replace('"n": 3', '"n": 4', 1))
    snapshot = files(d / "cache")
    bad = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check")
    assert bad.returncode == 1 and "report differs" in bad.stdout
    assert files(d / "cache") == snapshot


def test_cost_estimates_come_from_similar_cells_only():
    from naspoison.run.plan import cost_class as _cost_class

    spec = {"stage": "train", "upstream": {}, "version": "1",
            "params": {"seed": 0, "genotype": "a", "recipe": {"epochs": 10}, "dataset": {"name": "digits"}}}
    other_seed = {**spec, "upstream": {"poison": "x"}, "params": {**spec["params"], "seed": 3, "genotype": "b"}}
    other_profile = {**spec, "params": {**spec["params"], "recipe": {"epochs": 600}}}
    assert _cost_class(spec) == _cost_class(other_seed)  # seed, architecture, upstream do not set the cost
    assert _cost_class(spec) != _cost_class(other_profile)  # a demo retrain never estimates a paper one
    assert _cost_class(spec) != _cost_class({**spec, "stage": "search"})


def test_tampered_result_is_flagged_and_never_used(tiny):
    d = tiny(seeds=2, epochs=1)
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny").returncode == 0
    train = min((d / "cache/train").glob("*.json"))
    rec = json.loads(train.read_text())
    rec["result"]["test_acc"] = 1.0  # someone "improves" a result by hand
    train.write_text(json.dumps(rec))

    verify = naspoison(d, "verify")
    assert verify.returncode == 1 and f"CORRUPT cache/train/{train.name}" in verify.stdout
    check = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check")
    assert check.returncode == 1 and "corrupt" in check.stdout
    rep = naspoison(d, "report", "suite.yaml", "--profile", "tiny", "--out", "out")
    assert rep.returncode == 0
    report = json.loads((d / "out/report.json").read_text())
    assert all(r["mean"] < 100.0 for r in report["rows"])   # the edited 100% was not read
    assert "corrupt" in rep.stderr
    # bench refuses to overwrite it silently either
    rerun = naspoison(d, "bench", "suite.yaml", "--profile", "tiny")
    assert rerun.returncode == 1 and json.loads(train.read_text())["result"]["test_acc"] == 1.0


def test_kill_9_mid_run_loses_only_the_cell_in_flight(tiny):
    d = tiny(seeds=4, epochs=3)
    proc = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((d / "cache").glob("train/*.json"))) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    survived = files(d / "cache")
    assert any(k.startswith("train/") for k in survived)
    assert len([k for k in survived if k.startswith("train/")]) < 4, "killed too late to test anything"
    assert naspoison(d, "verify").returncode == 0         # nothing half-written

    rerun = naspoison(d, "bench", "suite.yaml", "--profile", "tiny")
    assert rerun.returncode == 0, rerun.stdout
    after = files(d / "cache")
    assert all(after[k] == v for k, v in survived.items())  # finished cells kept byte for byte
    n_new = sum(computed(rerun.stdout).values())
    assert n_new == len(after) - len(survived)              # only what was missing was computed
    assert naspoison(d, "verify").returncode == 0
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check").returncode == 0
    assert not list((d / "cache").glob("*/.tmp-*")) or naspoison(d, "gc").returncode == 0


def test_two_bench_processes_on_one_store(tiny):
    d = tiny(seeds=3, epochs=2)
    procs = [naspoison(d, "bench", "suite.yaml", "--profile", "tiny", wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    totals = {}
    for out in outs:
        for k, v in computed(out).items():
            totals[k] = totals.get(k, 0) + v
    assert totals == {"poison": 4, "search": 15, "train": 3}   # every cell computed exactly once
    store = ResultStore(d / "cache", read_only=True)
    paths = list(store.iter_files())
    assert len(paths) == 22 and len({p.stem for p in paths}) == 22
    for p in paths:
        store.load_file(p)
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check").returncode == 0


@pytest.mark.slow
def test_two_workers_shards_and_only(tiny):
    d = tiny(seeds=2, epochs=1)
    out = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--only", "attack=none,seed=0")
    assert out.returncode == 0 and computed(out.stdout) == {"search": 1, "train": 1}
    for i in range(2):
        out = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--shard", f"{i}/2")
        assert out.returncode == 0, out.stdout
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check").returncode == 1  # no report yet
    shutil.rmtree(d / "cache")
    out = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--workers", "2")
    assert out.returncode == 0, out.stdout
    assert computed(out.stdout) == {"poison": 4, "search": 10, "train": 2}
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--check").returncode == 0


def results(root: Path) -> dict:
    """Each cell's result by file name (records also hold wall times and hosts, which differ by design)."""
    return {p.relative_to(root).as_posix(): ResultStore.load_file(p).result for p in sorted(root.glob("*/*.json"))}


@pytest.mark.slow
def test_queue_workers_and_submitit_tasks_compute_each_cell_once_and_match_one_worker(tiny):
    pytest.importorskip("submitit")
    d = tiny(seeds=2, epochs=1)
    expected = {"poison": 4, "search": 10, "train": 2}
    one = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--store", "one", "--artifacts", "a1")
    assert one.returncode == 0 and computed(one.stdout) == expected, one.stdout
    two = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--store", "two", "--artifacts", "a2", "--workers", "2")
    assert two.returncode == 0 and computed(two.stdout) == expected, two.stdout
    sub = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--store", "sub", "--artifacts", "a3",
                    "--executor", "submitit-local", "--tasks", "3")
    assert sub.returncode == 0, sub.stdout + sub.stderr
    assert "in 3 local task(s)" in sub.stdout and "computed 4 poison, 10 search, 2 train in" in sub.stdout, sub.stdout
    assert not (d / "sub/.failures").exists() or not list((d / "sub/.failures").iterdir())
    reference = results(d / "one")
    assert len(reference) == 16 and results(d / "two") == reference and results(d / "sub") == reference
    # every task's log names the cells it computed: together each cell exactly once
    logs = "".join(p.read_text() for p in (d / "sub/.slurm").rglob("*_log.out"))
    assert len(re.findall(r"^(?:poison|search|train) ", logs, flags=re.MULTILINE)) == 16, logs
    # the same command again only collects (and writes the report)
    again = naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--store", "sub", "--artifacts", "a3",
                      "--executor", "submitit-local", "--tasks", "3")
    assert again.returncode == 0 and "every cell is stored: collecting" in again.stdout, again.stdout
    assert (d / "reports/tiny/report.json").exists()


def test_merge_is_a_union_of_files(tiny):
    d = tiny(seeds=2, epochs=1)
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--shard", "0/2", "--store", "a").returncode == 0
    assert naspoison(d, "bench", "suite.yaml", "--profile", "tiny", "--shard", "1/2", "--store", "b").returncode == 0
    merged = naspoison(d, "merge", "a", "b", "--store", "m")
    assert merged.returncode == 0, merged.stdout
    assert set(files(d / "m")) == set(files(d / "a")) | set(files(d / "b"))
    assert naspoison(d, "report", "suite.yaml", "--profile", "tiny", "--store", "m").returncode == 0


PDARTS_SUITE = """\
version: 1
families:
  poisoning:
    attacks: [none, random_label_flip]
    budgets: [0.5]
    algorithms: [pdarts]
  random_baseline: {}
profiles:
  tiny:
    seeds: 1
    dataset: {name: digits, train_size: 300, test_size: 120}
    train: {epochs: 1, batch_size: 64, init_channels: 4, layers: 3, crop_padding: 1, flip: false, cutout: 2}
    algorithms:
      pdarts: {cells: [3, 3, 3], skip_dropout: [0.0, 0.4, 0.7], epochs: 2, warmup_epochs: 1, batch_size: 32,
               init_channels: 2, search_size: 96, crop_padding: 1, flip: false}
"""


def test_pdarts_searches_on_the_poisoned_set_and_retrains_on_clean_data(tmp_path):
    (tmp_path / "suite.yaml").write_text(PDARTS_SUITE)
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stage 3/3 (3 cells, 3 ops/edge) epoch 2" in run.stdout  # per-epoch progress reaches the log
    store = ResultStore(tmp_path / "cache", read_only=True)
    records = [store.load_file(p) for p in store.iter_files()]
    searches = {r.spec["upstream"]["poison"]: r for r in records
                if r.stage == "search" and r.spec["params"]["algorithm"] == "pdarts"}
    clean, poisoned = searches.pop(None), next(iter(searches.values()))
    poison = store.get("poison", poisoned.spec["upstream"]["poison"])
    assert poison.spec["params"]["attack"] == "random_label_flip"
    # the same seed on half-flipped labels trains the supernet differently from the first epoch on
    assert clean.result["stages"][0]["curves"]["train_loss"] != poisoned.result["stages"][0]["curves"]["train_loss"]
    # retraining: the train cell holds only the genotype, recipe, clean dataset and seed — no poison
    for rec in (r for r in records if r.stage == "train"):
        assert rec.spec["upstream"] == {} and "poison" not in json.dumps(rec.spec)
    report = json.loads((tmp_path / "reports/tiny/report.json").read_text())
    assert "pdarts" in json.dumps(report)


NAS_GC_SUITE = """\
version: 1
families:
  poisoning:
    attacks: [none, nas_gradient_canceling]
    budgets: [0.2]
    algorithms: [random, pdarts, robot]
profiles:
  tiny:
    seeds: 2
    dataset: {name: digits, train_size: 200, test_size: 100}
    train: {epochs: 1, batch_size: 64, init_channels: 4, layers: 3, crop_padding: 1, flip: false, cutout: 2}
    attacks:
      nas_gradient_canceling: {steps: 3, chunk_size: 64}
    algorithms:
      pdarts: {cells: [3, 3, 3], skip_dropout: [0.0, 0.4, 0.7], epochs: 2, warmup_epochs: 1, batch_size: 32,
               init_channels: 2, search_size: 96, crop_padding: 1, flip: false}
      robot: {pool_size: 4, metric_batch_size: 16, metric_channels: 2, metric_layers: 3, queries: 2, bo_queries: 1,
              init_points: 1, acquisition_candidates: 50,
              query_train: {epochs: 1, batch_size: 64, init_channels: 2, layers: 3, auxiliary_weight: 0.0,
                            drop_path_prob: 0.0, cutout: 0, crop_padding: 1, flip: false}}
"""


@pytest.mark.slow
def test_nas_gradient_canceling_targets_each_algorithms_best_clean_trial(tmp_path):
    (tmp_path / "suite.yaml").write_text(NAS_GC_SUITE)
    run = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert run.returncode == 0, run.stdout + run.stderr
    store = ResultStore(tmp_path / "cache", read_only=True)
    records = [store.load_file(p) for p in store.iter_files()]
    poisons = {r.spec["params"]["victim"]["algorithm"]: r for r in records if r.stage == "poison"}
    assert sorted(poisons) == ["pdarts", "robot"]  # one poisoned set per victim; random has no such row
    clean_train = {}
    for r in records:
        if r.stage == "search" and r.spec["upstream"]["poison"] is None:
            alg, seed = r.spec["params"]["algorithm"], r.spec["params"]["seed"]
            train = next(t for t in records if t.stage == "train" and t.spec["params"]["seed"] == seed
                         and t.spec["params"]["genotype"] == r.result["genotype"])
            clean_train[alg, seed] = (train.result["test_acc"], r.key)
    for alg, rec in poisons.items():
        victim = rec.spec["params"]["victim"]
        # the key holds the clean search cells the victim is chosen from ...
        assert sorted(s["key"] for s in victim["searches"]) == sorted(k for (a, _), (_, k) in clean_train.items() if a == alg)
        # ... and the victim is the one with the best clean retraining accuracy (ties: lowest seed)
        best = max((acc, -seed) for (a, seed), (acc, _) in clean_train.items() if a == alg)
        summary = rec.result
        assert summary["victim"]["seed"] == -best[1] and summary["victim"]["clean_test_acc"] == best[0]
        assert summary["victim"]["target"].startswith("alphas" if alg == "pdarts" else "weights")
        if alg == "pdarts":  # θ = the alphas of the last stage: 2 cells × 14 edges × 3 alive ops
            assert summary["target"]["n_params"] == 2 * 14 * 3
            # the authors' absolute radius 1.0 (issue 18), resolved into the key; its effect on the genotype recorded
            assert rec.spec["params"]["attack_params"]["gradpc"] == {**rec.spec["params"]["attack_params"]["gradpc"],
                                                                     "epsilon": 1.0, "relative": False}
            assert summary["target"]["radius"] == 1.0
            assert 0 <= summary["target"]["architecture"]["genotype_entries_changed"]["total"] <= 16
        else:  # θ = every weight of the trained final network except the (unused in eval) auxiliary head
            assert 1000 < summary["target"]["n_params"] < 100_000
        assert summary["target"]["distance"] <= summary["target"]["radius"] * (1 + 1e-5)
        assert len(summary["objective_curve"]) == 3 and summary["linf_max_pixels"] <= 16
    # each clean trial ran once although two attack rows consumed it
    assert computed(run.stdout).get("search") == 2 * 3 + 2 * 2
    # an evicted victim (weights, supernet) is recomputed deterministically: the same poisons again
    import torch

    from naspoison.stages import StageContext
    from naspoison.stages.poison import make_poison
    from naspoison.store import ArtifactCache

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run had (OMP_NUM_THREADS=1): float sums depend on the thread count
    art = ArtifactCache(tmp_path / "artifacts")
    from naspoison.data.datasets import DatasetSpec

    dataset = DatasetSpec(name="digits", train_size=200, test_size=100).model_dump()
    for rec in poisons.values():
        kept = art.get(rec.key)
        for key in list(art._cache.iterkeys()):
            if key.startswith(("weights/", "supernet/")):
                del art._cache[key]
        again = make_poison(rec.spec, StageContext(dataset, art, "cpu", store))
        assert again.to_bytes() == kept
    art.close()
    torch.set_num_threads(threads)


EVAS_SUITE = """\
version: 1
families:
  evas_search: {search_seeds: 1}
  evas_eval: {baselines: [resnet18], random_archs: 1, scenarios: [finetune_clean, retrain, poisoned_finetune],
              poison_fractions: [0.05], landscape_edges: [[0, 3], [0, 1]], enumeration: true,
              defenses: [neural_cleanse, strip, fine_pruning]}
profiles:
  tiny:
    seeds: 2
    dataset: {name: digits, train_size: 240, test_size: 96}
    evas:
      seeds: 1
      search: {batch_size: 6, inits: 2, channels: 4, cells_per_stage: 1, generator_channels: 4, pool_size: 4,
               sample_size: 2, steps: 4}
      model: {epochs: 2, batch_size: 48, channels: 4, cells_per_stage: 1, resnet_width: 4, crop_padding: 1, flip: false}
      generator: {channels: 4, mask_epochs: 1, pattern_epochs: 1, batch_size: 48, mask_density: 0.25,
                  crop_padding: 1, flip: false}
      finetune: {epochs: 1, batch_size: 48, crop_padding: 1, flip: false}
      study_archs: 3
      defenses:
        neural_cleanse: {epochs: 2, samples: 60}
        strip: {overlays: 4, inputs: 20}
        fine_pruning: {samples: 60, fractions: [0.0, 0.5], finetune: {epochs: 1, batch_size: 48, crop_padding: 1, flip: false}}
"""


@pytest.mark.slow
def test_evas_families_run_cache_check_and_report(tmp_path):
    import json

    from naspoison.families import walk_store
    from naspoison.families.evas_search import trial_backdoor_spec
    from naspoison.spaces import nb201
    from naspoison.store import ResultStore, content_key
    from naspoison.suite.expand import expand
    from naspoison.suite.schema import Suite

    (tmp_path / "suite.yaml").write_text(EVAS_SUITE)
    first = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert first.returncode == 0, first.stdout + first.stderr
    store = ResultStore(tmp_path / "cache", read_only=True)
    trials = expand(Suite(tmp_path / "suite.yaml"), "tiny").trials
    search = store.get("evas_search", content_key(trials[0].search)).result
    k = sum(op.startswith("nor_conv") for op in nb201.parse(search["arch"]))
    # backdoor: 3 rows + 3 sampled cells + the 2^k enumeration cells but the found one (the Evas row's cell);
    # scores: 3 sampled + 25 landscape + 2^k enumeration, the found cell's shared; 3 rows × 3 scenarios
    n_backdoor, n_score = 3 + 3 + 2 ** k - 1, 3 + 25 + 2 ** k - 1
    # and 3 rows × 3 defenses
    assert (f"computed {n_backdoor} backdoor, 9 defense, {n_score} evas_score, 1 evas_search, 9 scenario"
            in first.stdout), first.stdout
    assert len(search["history"]) == 4 + 4 and search["scores_computed"] == search["distinct_archs"]
    evas_row = next(t for t in trials if t.family == "evas_eval" and t.algorithm == "evas")
    spec = trial_backdoor_spec(search["arch"], evas_row)
    assert spec["params"]["arch"] == search["arch"] and spec["upstream"]["evas_search"] == content_key(trials[0].search)
    report = json.loads((tmp_path / "reports" / "tiny" / "report.json").read_text())
    rows = report["evas"]["rows"]
    assert [r["row"] for r in rows] == ["evas", "resnet18", "random_1"] and "algorithms" not in report
    assert [(t["scenario"], t["fraction"]) for t in report["evas"]["scenarios"]] == [
        ("finetune_clean", None), ("retrain", None), ("poisoned_finetune", 0.05)]
    cell = store.get("backdoor", content_key(spec)).result
    assert rows[0]["acc"]["mean"] == pytest.approx(100 * cell["acc"]) and 0 <= cell["asr"] <= 1
    assert "Evas: ACC and ASR" in (tmp_path / "reports" / "tiny" / "report.md").read_text()
    d = report["evas"]["defenses"]
    assert [r["row"] for r in d["neural_cleanse"]] == ["evas", "resnet18", "random_1"]
    assert all(0 <= r["auroc"]["mean"] <= 1 for r in d["strip"]) and len(d["fine_pruning"]) == 3
    study = report["evas"]["study"]
    assert len(study["sample"]["rows"]) == 3 and study["sample"]["spearman_score_asr"]["n"] == 3
    land = study["landscape"]
    assert len(land) == 25 and sum(r["found"] for r in land) == 1
    # same batch and init seeds as the search: the found cell scores exactly what the search recorded
    assert next(r["score"] for r in land if r["found"]) == search["score"]
    assert len(study["enumeration"]) == 2 ** k and all("asr" in r for r in study["enumeration"])
    assert (tmp_path / "reports" / "tiny" / "evas_score_vs_attack.png").stat().st_size > 1000
    again = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert "computed nothing" in again.stdout
    check = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--check")
    n_cells = 1 + n_backdoor + n_score + 9 + 9
    assert check.returncode == 0 and f"{n_cells} cells verified" in check.stdout, check.stdout
    # a scenario whose backdoor weights were evicted recomputes them: the same numbers as before
    poisoned = next(t for t in trials if t.scenario == "poisoned_finetune" and t.algorithm == "evas")
    scen = walk_store(poisoned, store)[2][0].spec  # search, backdoor, scenario
    before = store.get("scenario", content_key(scen)).result
    assert before["n_poisoned"] == 12  # ⌈0.05 · 240⌉
    (tmp_path / "cache" / "scenario" / f"{content_key(scen)}.json").unlink()
    shutil.rmtree(tmp_path / "artifacts")
    redo = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny")
    assert "computed 1 scenario" in redo.stdout and "recomputing the backdoor cell" in redo.stdout, redo.stdout
    after = store.get("scenario", content_key(scen)).result
    assert (after["acc"], after["asr"]) == (before["acc"], before["asr"])
    (tmp_path / "suite.yaml").write_text(EVAS_SUITE.replace("evas_search: {search_seeds: 1}\n", ""))
    bad = naspoison(tmp_path, "bench", "suite.yaml", "--profile", "tiny", "--plan")
    assert bad.returncode == 2 and "needs the evas_search family" in bad.stdout + bad.stderr
