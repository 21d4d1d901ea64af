"""How this process computes cells, part of no cell's key: today, whether training steps go through
``torch.compile`` (``bench --compile BACKEND``, ``naspoison.bench(compile=...)``). Compiled kernels may round
differently from eager ones, so a store should be filled one way or the other.

Set for the duration of a run with :func:`using`; worker processes get it through :func:`init_worker` (their
pool's initializer) and submitit tasks carry it in their pickled task. Torch-free.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Machine:
    compile: str | None = None  # torch.compile backend of the training step (inductor, eager...); None: eager


_current = Machine()


def current() -> Machine:
    return _current


def apply(settings: Machine) -> None:
    """Make ``settings`` this process's (a worker's, at its start)."""
    global _current
    _current = settings


@contextlib.contextmanager
def using(**changes) -> Iterator[Machine]:
    """These settings in this process until the block ends (the caller's own afterwards)."""
    before = _current
    apply(replace(before, **changes))
    try:
        yield _current
    finally:
        apply(before)


def init_worker(settings: Machine, then: Callable, *args) -> None:
    """A pool initializer: take the parent's ``settings``, then run ``then(*args)`` (the pool's own initializer)."""
    apply(settings)
    then(*args)
