"""naspoison: audit neural architecture search under data poisoning.

The Python API (see the README's "Python API"): ``bench``, ``report``, ``check``, ``plan`` run and read a suite
profile as the ``naspoison`` command does; ``load_dataset``, ``compute_metrics``, ``train_genotype`` are the
pieces; ``attacks`` and ``nas`` are the component registries (``naspoison.attacks.get("gaussian_noise")``).
Everything is imported on first use, so ``import naspoison`` (and the command's read-only paths) stay torch-free.
"""
from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_API = ("bench", "report", "check", "plan", "gc", "load_dataset", "compute_metrics", "train_genotype", "UsageError")
_MODULES = ("attacks", "nas", "api")

__all__ = ["UsageError", "__version__", "api", "attacks", "bench", "check", "compute_metrics", "gc", "load_dataset", "nas",
           "plan", "report", "train_genotype"]


def __getattr__(name: str):  # PEP 562: the API and the registries load when first asked for
    if name in _API:
        return getattr(importlib.import_module("naspoison.api"), name)
    if name in _MODULES:
        return importlib.import_module(f"naspoison.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``naspoison.report`` is the function; importing the subpackage of that name would rebind it here (the
    import system sets a package's attribute for each submodule), so that one binding is refused. The
    subpackage stays importable by its dotted name: ``from naspoison.report import render``."""

    def __setattr__(self, name: str, value) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
