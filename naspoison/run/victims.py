"""The victim of a NAS-aware attack: the best clean trial of the attacked algorithm, loaded from the
store (its genotype and accuracy) and the artifact cache (trained weights or the converged supernet),
recomputed deterministically when an artifact was evicted.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


from naspoison.data.datasets import load_dataset
from naspoison.nas import ALGORITHMS
from naspoison.run import stages
from naspoison.spaces.darts import Genotype
from naspoison.store import ArtifactCache, ResultStore, content_key, state_from_bytes
from naspoison._lazy import lazy

torch = lazy("torch", globals())
nn = lazy("torch.nn", globals())
darts_supernet = lazy("naspoison.spaces.darts_supernet", globals())  # a torch module: loaded at first use


@dataclass
class Victim:
    model: nn.Module                              # model(x) -> (logits, None), eval mode
    named_params: list[tuple[str, nn.Parameter]]  # θ: what GradPC moves and GC matches
    info: dict                                    # recorded in the poison's summary
    # alphas targets: the genotype and softmax weights derived from the model's current alphas
    architecture: Callable[[], dict] | None = None


def trained_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """θ of a trained evaluation network: every weight except the auxiliary head, unused in eval mode."""
    return [(n, p) for n, p in model.named_parameters() if not n.startswith("auxiliary_head")]


def victim_spec(algorithm: str, algorithm_params: dict, searches: list[tuple[int, str]], recipe: dict) -> dict:
    """What decides the victim, for the poison key: the clean search cells (seed, key) it picks from."""
    return {"algorithm": algorithm, "algorithm_params": algorithm_params, "recipe": recipe,
            "searches": [{"seed": s, "key": k} for s, k in searches]}


def load_victim(victim: dict, dataset: dict, store: ResultStore, artifacts: ArtifactCache | None,
                device: str, log=lambda m: None) -> Victim:
    trials = []
    for s in victim["searches"]:
        found = store.get("search", s["key"])
        if found is None:
            raise RuntimeError(f"the victim's clean {victim['algorithm']} search (seed {s['seed']}) is not in the "
                               "store; the suite runs it first — run the suite, not the cell alone")
        tspec = stages.train_spec(found.result["genotype"], victim["recipe"], dataset, s["seed"])
        trained = store.get("train", content_key(tspec))
        if trained is None:
            raise RuntimeError(f"the victim's clean {victim['algorithm']} trial (seed {s['seed']}) is not trained yet")
        trials.append((trained.result["test_acc"], -s["seed"], s, found.result, tspec))
    acc, _, best, search_result, tspec = max(trials, key=lambda t: t[:2])
    info = {"algorithm": victim["algorithm"], "seed": best["seed"], "clean_test_acc": acc,
            "genotype": search_result["genotype"], "candidates": len(trials), "recomputed": False}
    if getattr(ALGORITHMS[victim["algorithm"]], "gc_target", "weights") == "alphas":
        net = _supernet(victim, best, search_result, dataset, artifacts, device, log, info, store)
        named = [("alpha_normal", net.alpha_normal), ("alpha_reduce", net.alpha_reduce)]
        info["target"] = "alphas of the converged supernet"
        model = darts_supernet.PairOutput(net)
        skip_cap = victim["algorithm_params"].get("skip_cap", 2)
        architecture = lambda: _supernet_architecture(net, skip_cap)  # noqa: E731
    else:
        architecture = None
        model = _trained(tspec, dataset, artifacts, device, log, info, trained)
        named = trained_weights(model)
        info["target"] = "weights of the trained final architecture"
    log(f"victim: {victim['algorithm']} seed {best['seed']} (clean accuracy {acc:.4f}), target {info['target']}")
    return Victim(model.to(device).eval(), named, info, architecture)


def _supernet_architecture(net: darts_supernet.SuperNetwork, skip_cap: int) -> dict:
    """The genotype P-DARTS derives from the supernet's current alphas (its last stage's rule)."""
    from naspoison.nas.pdarts import _derive

    probs = {k: v.double().cpu().numpy() for k, v in net.probabilities().items()}
    ops = {"normal": [list(o) for o in net.normal_ops], "reduce": [list(o) for o in net.reduce_ops]}
    return {"genotype": _derive(ops, probs, skip_cap)["genotype"], "probs": {k: v.tolist() for k, v in probs.items()}}


def _trained(tspec: dict, dataset: dict, artifacts, device, log, info: dict, record=None) -> nn.Module:
    from naspoison.train import Recipe, build_eval_network

    p = tspec["params"]
    # checked against the train record that made them; failing the check is the same as evicted
    loaded = stages.load_artifact(artifacts, stages.weights_key(tspec), state_from_bytes, record, log)
    if loaded is None:
        log("victim weights not in the artifact cache: retraining")
        model, result = stages.train_model(tspec, dataset, device)
        # equal on the machine that trained it; another machine or thread count may drift slightly
        info["recomputed"] = True
        info["recomputed_test_acc"] = result["test_acc"]
        stages.recomputed(artifacts, stages.weights_key(tspec), stages.weights_blob(model), record, log)
        return model
    model = build_eval_network(Genotype.from_dict(p["genotype"]), load_dataset(dataset), Recipe.model_validate(p["recipe"]))
    model.load_state_dict(loaded[0])
    return model


def _supernet(victim: dict, best: dict, search_result: dict, dataset: dict, artifacts, device, log,
              info: dict, store=None) -> darts_supernet.SuperNetwork:
    key = stages.supernet_key(best["key"])
    record = store.get("search", best["key"]) if store is not None else None
    state, meta = stages.load_artifact(artifacts, key, state_from_bytes, record, log) or (None, {})
    if "normal_ops" not in meta:  # absent, or written before supernets described themselves: recompute
        log("victim supernet not in the artifact cache: rerunning its clean search")
        spec = stages.search_spec(victim["algorithm"], victim["algorithm_params"], dataset, best["seed"], None)
        if content_key(spec) != best["key"]:
            raise RuntimeError("cannot rebuild the victim's search spec from its key")
        from naspoison.store.artifacts import recording

        with recording() as written:
            stages.compute_search(spec, None, dataset, artifacts, device)
        stages.note_drift(key, written.get(key), record, log)
        state, meta = state_from_bytes(artifacts.get(key))
        info["recomputed"] = True
    last = search_result["stages"][-1]
    # a rerun on another machine or thread count can drift from the stored search; say so
    info["supernet_matches_record"] = (meta["normal_ops"] == last["ops"]["normal"]
                                       and meta["reduce_ops"] == last["ops"]["reduce"])
    net = darts_supernet.SuperNetwork(meta["normal_ops"], meta["reduce_ops"], meta["init_channels"], meta["cells"],
                       meta["num_classes"], in_channels=meta["in_channels"])
    net.load_state_dict(state)
    return net.to(torch.device(device))
