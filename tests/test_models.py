"""The fixed reference networks and the surrogate cache."""
import torch

from naspoison.attacks import AttackContext
from naspoison.attacks.surrogate import SurrogateRecipe, surrogate_model
from naspoison.models import ResNet18
from naspoison.store import ArtifactCache


def test_resnet18_has_the_published_parameter_count():
    # ResNet-18 in its CIFAR form (3x3 stem, no max-pool): 11,173,962 parameters for 10 classes
    assert sum(p.numel() for p in ResNet18(10).parameters()) == 11_173_962
    logits, aux = ResNet18(10, in_channels=1, width=4).eval()(torch.zeros(2, 1, 8, 8))
    assert logits.shape == (2, 10) and aux is None


def test_surrogate_is_trained_once_and_reused_from_the_artifact_cache(tmp_path, digits_small):
    logs = []
    ctx = AttackContext(ArtifactCache(tmp_path), {"name": "digits"}, log=logs.append)
    recipe = SurrogateRecipe(width=4, epochs=1, crop_padding=1, flip=False)
    first, info = surrogate_model(digits_small, recipe, ctx)
    trained = len(logs)
    second, again = surrogate_model(digits_small, recipe, ctx)
    assert len(logs) == trained + 1 and "from the artifact cache" in logs[-1]
    assert info["test_acc"] == again["test_acc"]
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    # another recipe is another surrogate
    surrogate_model(digits_small, recipe.model_copy(update={"epochs": 2}), ctx)
    assert "training the surrogate" in logs[-3]
