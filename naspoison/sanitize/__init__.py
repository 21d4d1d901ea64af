"""Poisoning countermeasures applied to a search's data before the search (the poisoning paper's §6.1,
Table 4), by name. A new one is one file (a subclass of :class:`Sanitizer`, whose docstrings say what each
attribute means) plus one line here.

Not the backdoor defenses of ``naspoison.defenses``, which inspect a trained model. (Suite files and keys
call these ``defense``/``defenses`` too: those names are part of the keys and stay.)
"""
from naspoison.registry import lookup
from naspoison.sanitize.base import Sanitized, Sanitizer
from naspoison.sanitize.cluster_relabel import ClusterRelabel
from naspoison.sanitize.diffusion_denoise import DiffusionDenoise

SANITIZERS: dict[str, type[Sanitizer]] = {cls.name: cls for cls in (ClusterRelabel, DiffusionDenoise)}


def get(name: str) -> type[Sanitizer]:
    """The sanitizer class called ``name``; a KeyError naming the nearest one otherwise."""
    return lookup(SANITIZERS, name, "sanitizer")


__all__ = ["SANITIZERS", "Sanitized", "Sanitizer", "get"]
