"""The protocol every NAS algorithm subclasses: what it is called, what it reads and what an attack on it
targets, declared with defaults so that callers read capabilities instead of probing for them."""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

from naspoison.data.datasets import ImageData
from naspoison.params import StrictParams


class NASAlgorithm:
    """A search: ``search(data, params, seed, device, log)`` → ``{"genotype": {...}, ...}`` (a DARTS
    genotype for the entries of ``ALGORITHMS``; Evas, the one NB201 search, returns ``{"arch": ...}``)."""

    name: ClassVar[str]
    """The registry key and the name in suite.yaml and in keys."""
    title: ClassVar[str]
    """How tables name it."""
    Params: ClassVar[type[StrictParams]]
    """Its hyperparameters (profiles' ``algorithms: {name: {...}}``); a search key holds their ``model_dump()``."""
    space: ClassVar[Literal["darts", "nb201"]] = "darts"
    """The search space of what it returns."""
    uses_data: ClassVar[bool] = True
    """False: the result depends on the seed only, so every poisoned row shares the clean search."""
    uses_labels: ClassVar[bool] = True
    """False (training-free searches): label-flip rows cannot change it and are not run."""
    gc_target: ClassVar[Literal["weights", "alphas"]] = "weights"
    """What NAS-aware gradient canceling moves: the trained final architecture's weights, or ("alphas") the
    converged supernet's architecture parameters; an "alphas" algorithm's ``search`` takes ``keep`` (a dict
    that receives the supernet as ``keep["supernet"]``)."""

    def search(self, data: ImageData, params: StrictParams, seed: int, device="cpu",
               log: Callable[[str], None] | None = None) -> dict:
        """Search on ``data`` (possibly poisoned or sanitized); deterministic given ``seed``."""
        raise NotImplementedError
