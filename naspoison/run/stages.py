"""The pipeline's stages (SPEC §3): how each cell's spec is built and how it is computed.

A spec is ``{stage, version, params, upstream}``; its sha256 is the cell's key. ``version`` is
bumped when a stage's semantics change, so old results stop matching instead of being reused.
Machine-specific settings (dataset root, download flag) are not part of any key.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from functools import lru_cache

import numpy as np

from naspoison.attacks import ATTACKS, AttackContext, Poison
from naspoison.data.datasets import ImageData, content_identity, load_dataset
from naspoison.nas import ALGORITHMS
from naspoison.spaces.darts import Genotype
from naspoison.store import ArtifactCache, Record, ResultStore, content_key, state_to_bytes
from naspoison.store.artifacts import recording
from naspoison.store.timings import split_timings

VERSIONS = {"poison": "2", "search": "3", "train": "3", "evas_search": "2", "backdoor": "2", "scenario": "2", "evas_score": "2", "defense": "3", "metrics": "2", "sanitize": "1"}
SPACE = "darts"


def dataset_identity(dataset: dict) -> dict:
    """The part of a dataset spec that decides the data (not where it lives on this machine)."""
    keep = ("name", "train_size", "test_size", "subset_seed")
    # resize only when set: cells of unresized datasets keep the keys they had before it existed; a user's .npz
    # by the digest of its arrays, not its path (a file replaced in place must not reuse old results)
    return ({k: dataset[k] for k in keep} | content_identity(dataset)
            | ({"resize": list(dataset["resize"])} if dataset.get("resize") else {}))


def _spec(stage: str, params: dict, upstream: dict) -> dict:
    return {"stage": stage, "version": VERSIONS[stage], "params": params, "upstream": upstream}


def poison_spec(dataset: dict, attack: str, budget: float, attack_params: dict, seed: int,
                victim: dict | None = None) -> dict:
    """``victim`` (NAS-aware attacks only) names the clean search cells the attack's target comes from."""
    params = {"dataset": dataset_identity(dataset), "attack": attack, "budget": float(budget),
              "attack_params": attack_params, "seed": seed}
    return _spec("poison", {**params, "victim": victim} if victim else params, {})


def search_spec(algorithm: str, params: dict, dataset: dict, seed: int, poison: dict | None,
                sanitize: dict | None = None) -> dict:
    upstream = {"poison": content_key(poison) if poison else None}
    if sanitize is not None:  # only then: undefended searches keep the keys they had before sanitizers existed
        upstream["sanitize"] = content_key(sanitize)
    return _spec("search", {"algorithm": algorithm, "algorithm_params": params, "space": SPACE,
                            "dataset": dataset_identity(dataset), "seed": seed}, upstream)


def sanitize_spec(defense: str, params: dict, dataset: dict, seed: int, poison: dict | None) -> dict:
    """A countermeasure applied to a (possibly poisoned) training set before the search."""
    return _spec("sanitize", {"defense": defense, "defense_params": params, "dataset": dataset_identity(dataset),
                              "seed": seed}, {"poison": content_key(poison) if poison else None})


def train_spec(genotype: dict, recipe: dict, dataset: dict, seed: int) -> dict:
    return _spec("train", {"genotype": Genotype.from_dict(genotype).to_dict(), "recipe": recipe,
                           "dataset": dataset_identity(dataset), "seed": seed}, {})


def evas_search_spec(params: dict, dataset: dict, seed: int) -> dict:
    return _spec("evas_search", {"algorithm": "evas", "algorithm_params": params, "space": "nb201",
                                 "dataset": dataset_identity(dataset), "seed": seed}, {})


def evas_score_spec(arch: str, setting: dict, dataset: dict, seed: int) -> dict:
    """One architecture's Evas score with the score batch and init seeds of search seed ``seed``."""
    return _spec("evas_score", {"arch": arch, "setting": setting, "dataset": dataset_identity(dataset), "seed": seed}, {})


def backdoor_spec(arch: str, recipe: dict, generator: dict, dataset: dict, seed: int, search_key: str | None) -> dict:
    """A backdoor cell: the architecture itself is in the key (an Evas row also names its search)."""
    return _spec("backdoor", {"arch": arch, "recipe": recipe, "generator": generator,
                              "dataset": dataset_identity(dataset), "seed": seed}, {"evas_search": search_key})


def scenario_spec(scenario: str, fraction: float | None, finetune: dict, seed: int, backdoor: dict) -> dict:
    """A victim's treatment of a backdoor cell's model, the generator fixed (``seed``: its fine-tuning or
    re-initialisation seed)."""
    return _spec("scenario", {"scenario": scenario, "fraction": fraction, "finetune": finetune, "seed": seed},
                 {"backdoor": content_key(backdoor)})


def defense_spec(defense: str, params: dict, backdoor: dict) -> dict:
    """A backdoor defense run on a backdoor cell's model (the generator is only used to score it)."""
    return _spec("defense", {"defense": defense, "defense_params": params}, {"backdoor": content_key(backdoor)})


def metrics_spec(params: dict, dataset: dict, poison: dict | None) -> dict:
    """Training-free metrics of the metric-sensitivity architectures on a clean or poisoned training set."""
    return _spec("metrics", {"analysis_params": params, "dataset": dataset_identity(dataset)},
                 {"poison": content_key(poison) if poison else None})


# ----------------------------------------------------------------------------- computing
def weights_key(train: dict) -> str:
    return "weights/" + content_key(train)


def supernet_key(search_key: str) -> str:
    return "supernet/" + search_key


def weights_blob(model) -> bytes:
    return state_to_bytes(model.state_dict())


def make_poison(spec: dict, dataset: dict, artifacts: ArtifactCache | None = None, device: str = "cpu",
                store: ResultStore | None = None, log=None) -> Poison:
    p = spec["params"]
    attack = ATTACKS[p["attack"]]()
    data = load_dataset(dataset)
    rng = np.random.default_rng([p["seed"], 0x9015])
    ctx = AttackContext(artifacts, dataset_identity(dataset), log=log or (lambda m: None))
    if getattr(attack, "targets_algorithm", False):
        from naspoison.run.victims import load_victim

        if store is None:
            raise ValueError(f"{p['attack']} needs the result store to find its victim")
        ctx.victim = load_victim(p["victim"], dataset, store, artifacts, device, ctx.log)
    return attack.poison(data, p["budget"], attack.Params.model_validate(p["attack_params"]), rng, device, ctx)


def _record(store: ResultStore | None, spec: dict) -> Record | None:
    return store.get(spec["stage"], content_key(spec)) if store is not None else None


def load_artifact(artifacts: ArtifactCache | None, key: str, parse, record: Record | None, log=None):
    """An artifact checked against the digest its producing ``record`` holds (see store.artifacts); None when it
    must be recomputed. A record written before artifact digests existed: checked for damage only, said once."""
    if artifacts is None:
        return None
    expect = (record.provenance.get("artifacts") or {}).get(key) if record is not None else None
    if record is not None and expect is None:
        artifacts.unverified(key, log)
    return artifacts.load(key, parse, expect, log)


def recomputed(artifacts: ArtifactCache | None, key: str, blob: bytes, record: Record | None, log=None) -> None:
    """Keep a recomputed artifact; say so if it is not bit-identical to the one its record was made with."""
    if artifacts is not None:
        note_drift(key, artifacts.put(key, blob), record, log)


def note_drift(key: str, digest: str | None, record: Record | None, log=None) -> None:
    expect = (record.provenance.get("artifacts") or {}).get(key) if record is not None else None
    if expect is not None and digest != expect:
        (log or (lambda m: None))(f"artifact {key}: the recomputation differs from the one its record was made "
                                  "with (not bit-reproducible here); using the recomputation")


def poisoned_data(poison: dict | None, dataset: dict, artifacts: ArtifactCache, device: str = "cpu",
                  store: ResultStore | None = None, log=None) -> ImageData:
    """The (possibly poisoned) training set a search sees; recomputed if the artifact was evicted or fails its
    check against the poison record."""
    clean = load_dataset(dataset)
    if poison is None:
        return clean
    key, record = content_key(poison), _record(store, poison)
    p = load_artifact(artifacts, key, Poison.from_bytes, record, log)
    if p is None:
        p = make_poison(poison, dataset, artifacts, device, store, log)
        recomputed(artifacts, key, p.to_bytes(), record, log)
    return p.apply(clean)


def compute_poison(spec: dict, dataset: dict, artifacts: ArtifactCache, device: str,
                   store: ResultStore | None = None, log=None) -> dict:
    p = make_poison(spec, dataset, artifacts, device, store, log)
    artifacts.put(content_key(spec), p.to_bytes())
    return {"artifact": content_key(spec), **p.summary}


def make_sanitized(spec: dict, poison: dict | None, dataset: dict, artifacts: ArtifactCache, device: str,
                   store: ResultStore | None = None, log=None):
    from naspoison.sanitize import SANITIZERS

    p = spec["params"]
    sanitizer = SANITIZERS[p["defense"]]()
    params = sanitizer.Params.model_validate_json(json.dumps(p["defense_params"]))
    data = poisoned_data(poison, dataset, artifacts, device, store, log)
    return sanitizer.apply(data, params, p["seed"], device, log, clean_labels=load_dataset(dataset).y_train)


def compute_sanitize(spec: dict, poison: dict | None, dataset: dict, artifacts: ArtifactCache, device: str,
                     store: ResultStore | None = None, log=None) -> dict:
    s = make_sanitized(spec, poison, dataset, artifacts, device, store, log)
    artifacts.put(content_key(spec), s.to_bytes())
    return {"artifact": content_key(spec), **s.summary}


def search_data(poison: dict | None, sanitize: dict | None, dataset: dict, artifacts: ArtifactCache,
                device: str = "cpu", store: ResultStore | None = None, log=None) -> ImageData:
    """What a search reads: the (possibly poisoned) set, sanitized if the search is defended; recomputed if
    an artifact was evicted or fails its check."""
    data = poisoned_data(poison, dataset, artifacts, device, store, log)
    if sanitize is None:
        return data
    from naspoison.sanitize import Sanitized

    key, record = content_key(sanitize), _record(store, sanitize)
    s = load_artifact(artifacts, key, Sanitized.from_bytes, record, log)
    if s is None:
        s = make_sanitized(sanitize, poison, dataset, artifacts, device, store, log)
        recomputed(artifacts, key, s.to_bytes(), record, log)
    return s.apply(data)


def compute_search(spec: dict, poison: dict | None, dataset: dict, artifacts: ArtifactCache, device: str,
                   log=None, store: ResultStore | None = None, sanitize: dict | None = None) -> dict:
    """The search on the (possibly poisoned) training set; ``log(message)`` receives its progress.
    An algorithm whose final supernet is an attack target (``gc_target == "alphas"``) leaves it as an artifact."""
    p = spec["params"]
    alg = ALGORITHMS[p["algorithm"]]()
    data = search_data(poison, sanitize, dataset, artifacts, device, store, log)
    # JSON mode: a spec read back from the store has lists where the model has tuples
    params = alg.Params.model_validate_json(json.dumps(p["algorithm_params"]))
    if getattr(alg, "gc_target", "weights") == "alphas":
        keep: dict = {}
        out = alg.search(data, params, p["seed"], device=device, log=log, keep=keep)
        net = keep["supernet"]
        # self-describing: a rerun on another machine may keep other ops, so rebuild from this, not the record
        artifacts.put(supernet_key(content_key(spec)), state_to_bytes(net.state_dict(), {
            "normal_ops": [list(o) for o in net.normal_ops], "reduce_ops": [list(o) for o in net.reduce_ops],
            "cells": len(net.cells), "init_channels": params.init_channels, "num_classes": data.num_classes,
            "in_channels": data.shape[2]}))
    else:
        out = alg.search(data, params, p["seed"], device=device, log=log)
    Genotype.from_dict(out["genotype"])  # an algorithm must return a valid genotype
    return out


def compute_metric_cell(spec: dict, poison: dict | None, dataset: dict, artifacts: ArtifactCache, device: str,
                        log=None, store: ResultStore | None = None) -> dict:
    from naspoison.analyses.sensitivity import SensitivityParams, metric_values

    params = SensitivityParams.model_validate_json(json.dumps(spec["params"]["analysis_params"]))
    return metric_values(poisoned_data(poison, dataset, artifacts, device, store, log), params, device, log)


def train_model(spec: dict, dataset: dict, device: str):
    """The train cell's computation: (trained model, result)."""
    from naspoison.train import Recipe, fit, seeded_eval_network

    p = spec["params"]
    data, recipe = load_dataset(dataset), Recipe.model_validate(p["recipe"])
    model = seeded_eval_network(Genotype.from_dict(p["genotype"]), data, recipe, p["seed"])
    return model, fit(model, data, recipe, p["seed"], device, test_every_epoch=False)


def compute_train(spec: dict, dataset: dict, device: str, artifacts: ArtifactCache | None = None) -> dict:
    """Train on clean data; the weights go to the artifact cache (attack targets, defenses)."""
    model, result = train_model(spec, dataset, device)
    if artifacts is not None:
        artifacts.put(weights_key(spec), weights_blob(model))
    return result


def compute_evas_search(spec: dict, dataset: dict, artifacts: ArtifactCache | None, device: str, log=None) -> dict:
    """Evas search on clean data; every architecture score is also an artifact (shared with other searches)."""
    from naspoison.nas.evas import EvasParams, EvasSearch

    p = spec["params"]
    params = EvasParams.model_validate_json(json.dumps(p["algorithm_params"]))
    return EvasSearch().search(load_dataset(dataset), params, p["seed"], device, log, artifacts,
                               dataset_identity(dataset))


def compute_evas_score(spec: dict, dataset: dict, artifacts: ArtifactCache | None, device: str) -> dict:
    from naspoison.nas.evas import Scorer, ScoreSetting
    from naspoison.spaces import nb201

    p = spec["params"]
    scorer = Scorer(load_dataset(dataset), ScoreSetting.model_validate(p["setting"]), p["seed"],
                    dataset_identity(dataset), artifacts, device)
    return {"arch": p["arch"], **scorer(nb201.parse(p["arch"]))}


def backdoor_key(spec: dict) -> str:
    return "backdoor/" + content_key(spec)


def compute_backdoor(spec: dict, dataset: dict, artifacts: ArtifactCache | None, device: str, log=None) -> dict:
    """Train the architecture clean, then its trigger generator; both sets of weights go to the artifact
    cache (the backdoor defenses read them)."""
    from naspoison.backdoor.attack import GeneratorRecipe
    from naspoison.backdoor.evaluate import ModelRecipe, backdoor_cell

    p = spec["params"]
    model, gen, result = backdoor_cell(p["arch"], load_dataset(dataset), ModelRecipe.model_validate(p["recipe"]),
                                       GeneratorRecipe.model_validate(p["generator"]), p["seed"], device, log)
    if artifacts is not None:
        artifacts.put(backdoor_key(spec), state_to_bytes({**{f"model.{k}": v for k, v in model.state_dict().items()},
                                                          **{f"generator.{k}": v for k, v in gen.state_dict().items()}}))
    return result


def backdoor_models(spec: dict, dataset: dict, artifacts: ArtifactCache | None, device: str, log=None,
                    store: ResultStore | None = None):
    """(model, generator) of a backdoor cell from the artifact cache, recomputed if evicted or failing its check
    against the backdoor record (deterministic on CPU)."""
    from naspoison.backdoor import TriggerGenerator
    from naspoison.backdoor.attack import GeneratorRecipe
    from naspoison.backdoor.evaluate import ModelRecipe, build_model
    from naspoison.data.augment import channel_stats
    from naspoison.store import state_from_bytes

    record = _record(store, spec)
    loaded = load_artifact(artifacts, backdoor_key(spec), state_from_bytes, record, log)
    if loaded is None:
        (log or (lambda m: None))("backdoor weights not in the artifact cache: recomputing the backdoor cell")
        with recording() as written:
            compute_backdoor(spec, dataset, artifacts, device, log)
        if backdoor_key(spec) not in written:
            raise RuntimeError("the artifact cache did not keep the backdoor weights (size limit too small?)")
        note_drift(backdoor_key(spec), written[backdoor_key(spec)], record, log)
        loaded = state_from_bytes(artifacts.get(backdoor_key(spec)))
    p, data = spec["params"], load_dataset(dataset)
    state, _ = loaded
    model = build_model(p["arch"], data, ModelRecipe.model_validate(p["recipe"]))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    g = GeneratorRecipe.model_validate(p["generator"])
    gen = TriggerGenerator(data.shape[2], g.variant, g.channels, *channel_stats(data.x_train))
    gen.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("generator.")})
    return model.to(device), gen.to(device).eval()


def compute_defense(spec: dict, backdoor: dict, dataset: dict, artifacts: ArtifactCache | None, device: str,
                    log=None, store: ResultStore | None = None) -> dict:
    import torch

    from naspoison.defenses import DEFENSES, Suspect

    p = spec["params"]
    defense = DEFENSES[p["defense"]]()
    model, gen = backdoor_models(backdoor, dataset, artifacts, device, log, store)
    for q in gen.parameters():
        q.requires_grad_(False)
    suspect = Suspect(model, gen, load_dataset(dataset), backdoor["params"]["generator"]["target"], torch.device(device))
    params = defense.Params.model_validate_json(json.dumps(p["defense_params"]))
    return {"defense": p["defense"], "arch": backdoor["params"]["arch"], **defense.run(suspect, params, log)}


def compute_scenario(spec: dict, backdoor: dict, dataset: dict, artifacts: ArtifactCache | None, device: str,
                     log=None, store: ResultStore | None = None) -> dict:
    from naspoison.backdoor.attack import GeneratorRecipe
    from naspoison.backdoor.evaluate import ModelRecipe
    from naspoison.backdoor.scenarios import FinetuneRecipe, run_scenario

    p, b = spec["params"], backdoor["params"]
    model, gen = backdoor_models(backdoor, dataset, artifacts, device, log, store)
    return run_scenario(p["scenario"], model, gen, load_dataset(dataset), ModelRecipe.model_validate(b["recipe"]),
                        FinetuneRecipe.model_validate(p["finetune"]), GeneratorRecipe.model_validate(b["generator"]),
                        b["arch"], p["seed"], p["fraction"], device, log)


# ----------------------------------------------------------------------------- provenance
@lru_cache(maxsize=1)
def _static_provenance() -> dict:
    import torch

    import naspoison

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(__file__)).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"git_revision": rev, "naspoison": naspoison.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "host": socket.gethostname()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _hardware() -> dict:
    import torch

    return {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}


def _numerics(device: str) -> dict:
    """What decides the bits besides the code and the key: threads, GPU, determinism flags, precision."""
    import torch

    gpu = None
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {**_hardware(), "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "gpu": gpu, "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def autocast_of(spec: dict) -> str:
    """The autocast the cell ran under: bf16 only where a ``precision`` field of its parameters asks for it
    (naspoison.train.autocast_for), fp32 otherwise, on every device."""
    def asks_bf16(obj) -> bool:
        if isinstance(obj, dict):
            return obj.get("precision") == "bf16" or any(asks_bf16(v) for v in obj.values())
        return isinstance(obj, list) and any(asks_bf16(v) for v in obj)

    return "bfloat16" if asks_bf16(spec.get("params")) else "float32"


def provenance(device: str, start: float, end: float) -> dict:
    return {**_static_provenance(), **_numerics(device), "device": device, "start": start, "end": end,
            "wall_seconds": round(end - start, 3), "pid": os.getpid()}


THREADS_ENV = "NASPOISON_CELL_THREADS"


def cell_threads() -> int:
    """Intra-op threads every cell runs with, whatever the worker count (``$NASPOISON_CELL_THREADS``, default 1):
    CPU float reductions depend on it, so a result must not depend on how many workers were asked for."""
    raw = os.environ.get(THREADS_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"${THREADS_ENV}={raw!r}: a positive integer") from None
    if n < 1:
        raise ValueError(f"${THREADS_ENV}={raw!r}: a positive integer")
    return n


def run_stage(store: ResultStore, spec: dict, compute, device: str) -> dict:
    """Compute a cell on ``device`` and store it with its provenance; returns the stored result. The digests of
    the artifacts the cell made (keys holding its own key) go into its provenance: every later load checks them.
    Long loops inside checkpoint to the artifact cache (naspoison.run.checkpoint); the checkpoints go once the
    cell is stored."""
    import torch

    from naspoison.run import checkpoint

    before = torch.get_num_threads()
    torch.set_num_threads(cell_threads())
    try:
        start = time.time()
        key = content_key(spec)
        with checkpoint.cell(spec, key) as ck:
            with recording() as written:
                result, timings = split_timings(compute(device))  # wall times are provenance, not results
            prov = provenance(device, start, time.time()) | {"autocast": autocast_of(spec)}
            # checkpoints are the cell's scratch state, removed below: not artifacts later loads check
            made = {k: d for k, d in sorted(written.items()) if key in k and not k.startswith(checkpoint.PREFIX)}
            prov |= ({"artifacts": made} if made else {}) | ({"timings": timings} if timings else {})
            if ck is not None:
                prov["checkpoint"] = {"every_seconds": ck.every, **ck.log}
            rec = store.put(spec, result, prov)
            if ck is not None:
                ck.discard()
        return rec.result
    finally:
        torch.set_num_threads(before)
