"""The attacker's surrogate: a ResNet-18 trained on the clean training set (CLF scores with it; plain
gradient canceling targets it). Its recipe is part of the poison key, and the trained weights are an
artifact keyed by (dataset, recipe, seed), so every poison cell that needs the same surrogate reuses
it; if the artifact was evicted it is retrained (deterministic on CPU).
"""
from __future__ import annotations

from pydantic import Field

from naspoison.attacks.base import AttackContext
from naspoison.data.datasets import ImageData
from naspoison.store import content_key, state_from_bytes, state_to_bytes
from naspoison.train import PlainRecipe, Precision, fit, seed_everything
from naspoison._lazy import lazy

resnet = lazy("naspoison.models.resnet", globals())  # a torch module: loaded at first use

VERSION = "1"


class SurrogateRecipe(PlainRecipe):
    """The usual CIFAR ResNet-18 recipe (SGD 0.1 cosine, momentum 0.9, wd 5e-4, crop + flip), shortened to
    60 epochs: the surrogate only has to rank samples by confidence and to be a sensible target."""

    width: int = Field(64, gt=0, description="channels of the first stage (64 = ResNet-18)")
    seed: int = 0
    precision: Precision = "fp32"


def surrogate_model(data: ImageData, recipe: SurrogateRecipe, ctx: AttackContext, device="cpu") -> tuple[resnet.ResNet18, dict]:
    """The trained surrogate in eval mode on ``device`` and its record (test accuracy, curves)."""
    key = "surrogate/" + content_key({"artifact": "surrogate", "version": VERSION,
                                      "dataset": ctx.dataset_identity, "recipe": recipe.model_dump()})
    # shared by many poison cells, so no one record holds its digest: checked for damage (and parsed) only
    loaded = ctx.artifacts.load(key, state_from_bytes, log=ctx.log) if ctx.artifacts is not None else None
    if loaded is not None:
        state, info = loaded
        model = resnet.ResNet18(data.num_classes, in_channels=data.shape[2], width=recipe.width)
        model.load_state_dict(state)
        ctx.log(f"surrogate ResNet-18 from the artifact cache (test accuracy {info['test_acc']:.4f})")
    else:
        ctx.log(f"training the surrogate ResNet-18 (width {recipe.width}, {recipe.epochs} epochs)")
        seed_everything(recipe.seed)
        model = resnet.ResNet18(data.num_classes, in_channels=data.shape[2], width=recipe.width)
        out = fit(model, data, recipe, recipe.seed, device,
                  on_epoch=lambda e, m: ctx.log(f"surrogate epoch {e + 1}/{recipe.epochs}: loss {m['train_loss']:.3f} "
                                                f"test acc {m['test_acc']:.4f}"))
        info = {"test_acc": out["test_acc"], "params": out["params"], "curves": out["curves"]}
        if ctx.artifacts is not None:
            ctx.artifacts.put(key, state_to_bytes(model.state_dict(), info))
    return model.to(device).eval(), {"key": key, **info}
