"""Poisoning attacks, by name. A new attack is one file plus one line here."""
from naspoison.attacks.base import Poison, poison_count
from naspoison.attacks.gaussian_noise import GaussianNoise
from naspoison.attacks.random_label_flip import RandomLabelFlip

ATTACKS = {cls.name: cls for cls in (RandomLabelFlip, GaussianNoise)}
NO_ATTACK = "none"  # the clean row of every poisoning table

__all__ = ["ATTACKS", "NO_ATTACK", "Poison", "poison_count"]
