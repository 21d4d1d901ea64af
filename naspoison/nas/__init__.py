"""NAS algorithms over the DARTS space, by name. A new algorithm is one file (a subclass of
:class:`NASAlgorithm`, whose docstrings say what each attribute means) plus one line here;
docs/extending.md walks through one. The Evas search (``nas.evas.EvasSearch``, NB201) has the same shape
but its own family, so it is not listed here.
"""
from naspoison.nas.base import NASAlgorithm
from naspoison.nas.pdarts import PDARTS
from naspoison.nas.random_search import RandomSearch
from naspoison.nas.robot import RoBoT
from naspoison.nas.tenas import TENAS
from naspoison.registry import lookup

ALGORITHMS: dict[str, type[NASAlgorithm]] = {cls.name: cls for cls in (RandomSearch, PDARTS, TENAS, RoBoT)}


def get(name: str) -> type[NASAlgorithm]:
    """The algorithm class called ``name``; a KeyError naming the nearest one otherwise."""
    return lookup(ALGORITHMS, name, "NAS algorithm")


__all__ = ["ALGORITHMS", "NASAlgorithm", "get"]
