"""``backdoor``: an architecture trained clean, then its input-aware trigger generator (Evas); both sets of
weights are an artifact the scenario and defense stages read."""
from __future__ import annotations

from naspoison._lazy import lazy
from naspoison.backdoor.attack import GeneratorRecipe
from naspoison.backdoor.evaluate import ModelRecipe, backdoor_cell, build_model
from naspoison.data.augment import channel_stats
from naspoison.data.datasets import load_dataset
from naspoison.stages.artifacts_io import backdoor_key, load_artifact, note_drift, record_of
from naspoison.stages.base import Stage, StageContext, _spec, dataset_identity
from naspoison.store import state_from_bytes, state_to_bytes
from naspoison.store.artifacts import recording

trigger_nets = lazy("naspoison.backdoor.generator", globals(), "trigger_nets")  # a torch module: loaded at first use

VERSION = "2"


def backdoor_spec(arch: str, recipe: dict, generator: dict, dataset: dict, seed: int, search_key: str | None) -> dict:
    """A backdoor cell: the architecture itself is in the key (an Evas row also names its search)."""
    return _spec("backdoor", VERSION, {"arch": arch, "recipe": recipe, "generator": generator,
                                       "dataset": dataset_identity(dataset), "seed": seed},
                 {"evas_search": search_key})


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    """Train the architecture clean, then its trigger generator; both sets of weights go to the artifact
    cache (the backdoor defenses read them)."""
    p = spec["params"]
    model, gen, result = backdoor_cell(p["arch"], load_dataset(ctx.dataset), ModelRecipe.model_validate(p["recipe"]),
                                       GeneratorRecipe.model_validate(p["generator"]), p["seed"], ctx.device, ctx.log)
    if ctx.artifacts is not None:
        ctx.artifacts.put(backdoor_key(spec), state_to_bytes({
            **{f"model.{k}": v for k, v in model.state_dict().items()},
            **{f"generator.{k}": v for k, v in gen.state_dict().items()}}))
    return result


def backdoor_models(spec: dict, ctx: StageContext):
    """(model, generator) of backdoor cell ``spec`` from the artifact cache, recomputed if evicted or failing its
    check against the backdoor record (deterministic on CPU)."""
    key, record = backdoor_key(spec), record_of(ctx.store, spec)
    loaded = load_artifact(ctx.artifacts, key, state_from_bytes, record, ctx.log)
    if loaded is None:
        ctx.log("backdoor weights not in the artifact cache: recomputing the backdoor cell")
        with recording() as written:
            compute(spec, {}, ctx)
        if key not in written:
            raise RuntimeError("the artifact cache did not keep the backdoor weights (size limit too small?)")
        note_drift(key, written[key], record, ctx.log)
        loaded = state_from_bytes(ctx.artifacts.get(key))
    p, data = spec["params"], load_dataset(ctx.dataset)
    state, _ = loaded
    model = build_model(p["arch"], data, ModelRecipe.model_validate(p["recipe"]))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    g = GeneratorRecipe.model_validate(p["generator"])
    gen = trigger_nets.TriggerGenerator(data.shape[2], g.variant, g.channels, *channel_stats(data.x_train))
    gen.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("generator.")})
    return model.to(ctx.device), gen.to(ctx.device).eval()


STAGE = Stage("backdoor", VERSION, compute)
