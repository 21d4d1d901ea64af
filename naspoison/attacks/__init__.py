"""Poisoning attacks, by name. A new attack is one file (a subclass of :class:`Attack`, whose docstrings
say what each attribute means) plus one line here; docs/extending.md walks through one.
"""
from naspoison.attacks.base import Attack, AttackContext, NoParams, Poison, poison_count
from naspoison.attacks.confidence_label_flip import ConfidenceLabelFlip
from naspoison.attacks.gaussian_noise import GaussianNoise
from naspoison.attacks.gradient_canceling import GradientCanceling
from naspoison.attacks.nas_gradient_canceling import NASGradientCanceling
from naspoison.attacks.random_label_flip import RandomLabelFlip
from naspoison.registry import lookup

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (
    RandomLabelFlip, ConfidenceLabelFlip, GaussianNoise, GradientCanceling, NASGradientCanceling)}
NO_ATTACK = "none"  # the clean row of every poisoning table


def get(name: str) -> type[Attack]:
    """The attack class called ``name``; a KeyError naming the nearest one otherwise."""
    return lookup(ATTACKS, name, "attack")


__all__ = ["ATTACKS", "NO_ATTACK", "Attack", "AttackContext", "NoParams", "Poison", "get", "poison_count"]
