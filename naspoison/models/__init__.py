"""Fixed reference networks (not searched): the ResNet-18 surrogate and baseline."""
from naspoison.models.resnet import ResNet18

__all__ = ["ResNet18"]
