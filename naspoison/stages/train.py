"""``train``: a genotype retrained from scratch on clean data (SPEC §3 step 3)."""
from __future__ import annotations

# the module, not its names: ``fit`` is looked up when a cell runs (a test can replace it)
import naspoison.train as retraining
from naspoison.data.datasets import load_dataset
from naspoison.spaces.darts import Genotype
from naspoison.stages.artifacts_io import weights_blob, weights_key
from naspoison.stages.base import Stage, StageContext, _spec, dataset_identity

VERSION = "3"


def train_spec(genotype: dict, recipe: dict, dataset: dict, seed: int) -> dict:
    return _spec("train", VERSION, {"genotype": Genotype.from_dict(genotype).to_dict(), "recipe": recipe,
                                    "dataset": dataset_identity(dataset), "seed": seed}, {})


def train_model(spec: dict, ctx: StageContext):
    """The train cell's computation: (trained model, result)."""
    p = spec["params"]
    data, recipe = load_dataset(ctx.dataset), retraining.Recipe.model_validate(p["recipe"])
    model = retraining.seeded_eval_network(Genotype.from_dict(p["genotype"]), data, recipe, p["seed"])
    return model, retraining.fit(model, data, recipe, p["seed"], ctx.device, test_every_epoch=False)


def compute(spec: dict, inputs: dict, ctx: StageContext) -> dict:
    """Train on clean data; the weights go to the artifact cache (attack targets, defenses)."""
    model, result = train_model(spec, ctx)
    if ctx.artifacts is not None:
        ctx.artifacts.put(weights_key(spec), weights_blob(model))
    return result


STAGE = Stage("train", VERSION, compute)
