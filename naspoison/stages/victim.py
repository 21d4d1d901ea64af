"""The victim of a NAS-aware attack: the best clean trial of the attacked algorithm, loaded from the
store (its genotype and accuracy) and the artifact cache (trained weights or the converged supernet),
recomputed deterministically when an artifact was evicted. The poison stage's input, nothing else's.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from naspoison._lazy import lazy
from naspoison.data.datasets import load_dataset
from naspoison.nas import ALGORITHMS
from naspoison.nas.pdarts import _derive
from naspoison.spaces.darts import Genotype
from naspoison.stages.artifacts_io import (
    load_artifact,
    note_drift,
    recomputed,
    supernet_key,
    weights_blob,
    weights_key,
)
from naspoison.stages.base import StageContext
from naspoison.stages.searching import run_search
from naspoison.stages.train import train_model, train_spec
from naspoison.store import Record, content_key, state_from_bytes
from naspoison.store.artifacts import recording
from naspoison.train import Recipe, build_eval_network

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


def load_victim(victim: dict, ctx: StageContext) -> Victim:
    """``ctx``: the poison cell's (its dataset is the victim's; the store holds the victim's clean trials)."""
    store, log = ctx.store, ctx.log
    trials = []
    for s in victim["searches"]:
        found = store.get("search", s["key"])
        if found is None:
            raise RuntimeError(f"the victim's clean {victim['algorithm']} search (seed {s['seed']}) is not in the "
                               "store; the suite runs it first — run the suite, not the cell alone")
        tspec = train_spec(found.result["genotype"], victim["recipe"], ctx.dataset, s["seed"])
        trained = store.get("train", content_key(tspec))
        if trained is None:
            raise RuntimeError(f"the victim's clean {victim['algorithm']} trial (seed {s['seed']}) is not trained yet")
        trials.append((trained.result["test_acc"], -s["seed"], s, found, tspec, trained))
    acc, _, best, found, tspec, trained = max(trials, key=lambda t: t[:2])
    info = {"algorithm": victim["algorithm"], "seed": best["seed"], "clean_test_acc": acc,
            "genotype": found.result["genotype"], "candidates": len(trials), "recomputed": False}
    if ALGORITHMS[victim["algorithm"]].gc_target == "alphas":
        net = _supernet(found, ctx, info)
        named = [("alpha_normal", net.alpha_normal), ("alpha_reduce", net.alpha_reduce)]
        info["target"] = "alphas of the converged supernet"
        model = darts_supernet.PairOutput(net)
        skip_cap = victim["algorithm_params"].get("skip_cap", 2)
        architecture = lambda: _supernet_architecture(net, skip_cap)
    else:
        architecture = None
        model = _trained(tspec, ctx, info, trained)
        named = trained_weights(model)
        info["target"] = "weights of the trained final architecture"
    log(f"victim: {victim['algorithm']} seed {best['seed']} (clean accuracy {acc:.4f}), target {info['target']}")
    return Victim(model.to(ctx.device).eval(), named, info, architecture)


def _supernet_architecture(net: darts_supernet.SuperNetwork, skip_cap: int) -> dict:
    """The genotype P-DARTS derives from the supernet's current alphas (its last stage's rule)."""
    probs = {k: v.double().cpu().numpy() for k, v in net.probabilities().items()}
    ops = {"normal": [list(o) for o in net.normal_ops], "reduce": [list(o) for o in net.reduce_ops]}
    return {"genotype": _derive(ops, probs, skip_cap)["genotype"], "probs": {k: v.tolist() for k, v in probs.items()}}


def _trained(tspec: dict, ctx: StageContext, info: dict, record: Record) -> nn.Module:
    p, log = tspec["params"], ctx.log
    # checked against the train record that made them; failing the check is the same as evicted
    loaded = load_artifact(ctx.artifacts, weights_key(tspec), state_from_bytes, record, log)
    if loaded is None:
        log("victim weights not in the artifact cache: retraining")
        model, result = train_model(tspec, ctx)
        # equal on the machine that trained it; another machine or thread count may drift slightly
        info["recomputed"] = True
        info["recomputed_test_acc"] = result["test_acc"]
        recomputed(ctx.artifacts, weights_key(tspec), weights_blob(model), record, log)
        return model
    model = build_eval_network(Genotype.from_dict(p["genotype"]), load_dataset(ctx.dataset),
                               Recipe.model_validate(p["recipe"]))
    model.load_state_dict(loaded[0])
    return model


def _supernet(search: Record, ctx: StageContext, info: dict) -> darts_supernet.SuperNetwork:
    """The converged supernet of the victim's clean ``search`` record; its clean search rerun if evicted."""
    key, log = supernet_key(search.key), ctx.log
    state, meta = load_artifact(ctx.artifacts, key, state_from_bytes, search, log) or (None, {})
    if "normal_ops" not in meta:  # absent, or written before supernets described themselves: recompute
        log("victim supernet not in the artifact cache: rerunning its clean search")
        with recording() as written:  # the search's own progress is not the poison cell's
            run_search(search.spec, load_dataset(ctx.dataset), StageContext(ctx.dataset, ctx.artifacts, ctx.device))
        note_drift(key, written.get(key), search, log)
        state, meta = state_from_bytes(ctx.artifacts.get(key))
        info["recomputed"] = True
    last = search.result["stages"][-1]
    # a rerun on another machine or thread count can drift from the stored search; say so
    info["supernet_matches_record"] = (meta["normal_ops"] == last["ops"]["normal"]
                                       and meta["reduce_ops"] == last["ops"]["reduce"])
    net = darts_supernet.SuperNetwork(meta["normal_ops"], meta["reduce_ops"], meta["init_channels"], meta["cells"],
                                      meta["num_classes"], in_channels=meta["in_channels"])
    net.load_state_dict(state)
    return net.to(torch.device(ctx.device))
