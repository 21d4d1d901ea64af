"""One ``backdoor`` cell (Evas §4.2): build an architecture (an NB201 cell or ResNet-18), train it on
clean data, freeze it, train a trigger generator against it, and measure ACC and ASR.

The model recipe defaults are NATS-Bench's 200-epoch CIFAR recipe (SGD 0.1 + cosine, momentum 0.9,
weight decay 5e-4, batch 256, crop + flip; plain momentum, not Nesterov), used for NB201 cells and
ResNet-18 alike so that the rows differ only in the architecture.
"""
from __future__ import annotations

from pydantic import Field

from naspoison.backdoor.attack import GeneratorRecipe, attack_metrics, train_generator
from naspoison.data.datasets import ImageData
from naspoison.spaces import nb201
from naspoison.train import PlainRecipe, fit, seed_everything
from naspoison._lazy import lazy

resnet = lazy("naspoison.models.resnet", globals())  # a torch module: loaded at first use

RESNET18 = "resnet18"


class ModelRecipe(PlainRecipe):
    epochs: int = Field(200, gt=0)
    batch_size: int = Field(256, gt=0)
    channels: int = Field(16, gt=0, description="NB201 C")
    cells_per_stage: int = Field(5, gt=0)
    resnet_width: int = Field(64, gt=0, description="ResNet-18's first-stage channels")


def build_model(arch: str, data: ImageData, recipe: ModelRecipe):
    """``arch``: an NB201 arch string, or ``resnet18``."""
    if arch == RESNET18:
        return resnet.ResNet18(data.num_classes, in_channels=data.shape[2], width=recipe.resnet_width)
    return nb201.Network(nb201.parse(arch), data.num_classes, recipe.channels, recipe.cells_per_stage, data.shape[2])


def backdoor_cell(arch: str, data: ImageData, recipe: ModelRecipe, generator: GeneratorRecipe, seed: int,
                  device: str = "cpu", log=None):
    """(model, generator, result): the clean-trained model, the trained generator, ACC/ASR and curves."""
    log = log or (lambda m: None)
    seed_everything(seed)
    model = build_model(arch, data, recipe)
    log(f"training {arch} on clean data ({recipe.epochs} epochs)")
    trained = fit(model, data, recipe, seed, device,
                  on_epoch=lambda e, m: log(f"model epoch {e + 1}/{recipe.epochs}: test acc {m['test_acc']:.4f}"))
    gen, info = train_generator(model, data, generator, seed, device,
                                on_epoch=lambda stage, e, m: log(f"{stage} generator epoch {e + 1}: "
                                                                 + ", ".join(f"{k} {v:.4g}" for k, v in m.items())))
    metrics = attack_metrics(model, gen, data, generator.target, device, recipe.eval_batch_size)
    if abs(metrics["acc"] - trained["test_acc"]) > 1e-12:
        raise RuntimeError("the frozen model's accuracy changed while the generator trained")
    log(f"ACC {metrics['acc']:.4f}  ASR {metrics['asr']:.4f}")
    return model, gen, {"arch": arch, **metrics, "params": trained["params"], "model_curves": trained["curves"],
                        "generator_curves": info["curves"], "target": generator.target}
