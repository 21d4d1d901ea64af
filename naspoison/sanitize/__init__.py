"""Poisoning countermeasures applied to a search's data before the search (the poisoning paper's §6.1,
Table 4), by name. A sanitizer has ``name``, ``title``, ``Params``, ``discards_labels`` (its output does not
depend on the labels it is given) and ``apply(data, params, seed, device, log) -> Sanitized``.

Not the backdoor defenses of ``naspoison.defenses``, which inspect a trained model.
"""
from naspoison.sanitize.base import Sanitized
from naspoison.sanitize.cluster_relabel import ClusterRelabel
from naspoison.sanitize.diffusion_denoise import DiffusionDenoise

SANITIZERS = {cls.name: cls for cls in (ClusterRelabel, DiffusionDenoise)}

__all__ = ["SANITIZERS", "Sanitized"]
