"""NAS algorithms, by name. A new algorithm is one file plus one line here.

An algorithm has ``name``, ``Params`` (a pydantic model of its hyperparameters), ``uses_labels``
(False: label-flip rows are impossible for it) and ``search(data, params, seed, device, log)``
returning ``{"genotype": {...}, ...}``.
"""
from naspoison.nas.pdarts import PDARTS
from naspoison.nas.random_search import RandomSearch
from naspoison.nas.robot import RoBoT
from naspoison.nas.tenas import TENAS

ALGORITHMS = {cls.name: cls for cls in (RandomSearch, PDARTS, TENAS, RoBoT)}

__all__ = ["ALGORITHMS"]
