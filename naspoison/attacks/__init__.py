"""Poisoning attacks, by name. A new attack is one file plus one line here.

An attack has ``name``, ``title``, ``changes`` ("labels" or "images"), ``Params`` (a pydantic model)
and ``poison(data, budget, params, rng, device, ctx)`` returning a :class:`Poison`; one with
``targets_algorithm = True`` makes one poisoned set per victim algorithm (``ctx.victim``).
"""
from naspoison.attacks.base import AttackContext, Poison, poison_count
from naspoison.attacks.confidence_label_flip import ConfidenceLabelFlip
from naspoison.attacks.gaussian_noise import GaussianNoise
from naspoison.attacks.gradient_canceling import GradientCanceling
from naspoison.attacks.nas_gradient_canceling import NASGradientCanceling
from naspoison.attacks.random_label_flip import RandomLabelFlip

ATTACKS = {cls.name: cls for cls in (RandomLabelFlip, ConfidenceLabelFlip, GaussianNoise, GradientCanceling,
                                     NASGradientCanceling)}
NO_ATTACK = "none"  # the clean row of every poisoning table

__all__ = ["ATTACKS", "NO_ATTACK", "AttackContext", "Poison", "poison_count"]
