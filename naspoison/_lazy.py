"""Heavy libraries (torch, scikit-learn) bound at first use, so that the commands that only read the suite
and the store (``report``, ``bench --check``/``--plan``) start without them (issue 20): those commands need
the parameter classes and registries that live beside the compute code, never the compute itself.

``torch = lazy("torch", globals())`` behaves as ``import torch`` for every attribute use; the first use
imports the module and rebinds the owner's global to it, so later lookups cost nothing extra. A module
whose top level uses torch (an ``nn.Module`` subclass, a decorator) still imports it on import; the light
commands do not import those modules.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any


class _LazyModule:
    __slots__ = ("_name", "_namespace", "_alias")

    def __init__(self, name: str, namespace: dict[str, Any], alias: str):
        self._name, self._namespace, self._alias = name, namespace, alias

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str, namespace: dict[str, Any], alias: str | None = None) -> Any:
    """A stand-in for module ``name`` bound as ``alias`` (default: its last component) in ``namespace``."""
    return _LazyModule(name, namespace, alias or name.rsplit(".", 1)[-1])


def no_grad(fn: Callable) -> Callable:
    """``@torch.no_grad()`` for a plain function, without importing torch when the function is defined."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
