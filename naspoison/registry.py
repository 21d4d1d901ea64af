"""Looking a component up by name: every registry (attacks, NAS algorithms, sanitizers, backdoor defenses,
backdoor scenarios) is a plain ``{name: class}`` dict, and its package's ``get(name)`` goes through here so
that a typo names the nearest entry."""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def did_you_mean(name: str, options: Iterable) -> str:
    """``"; did you mean 'x'?"`` for the closest option, else the list of all of them."""
    options = [str(o) for o in options]
    close = difflib.get_close_matches(str(name), options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(options))}"


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """``registry[name]``, or a KeyError that says which ``kind`` of component was unknown and what is near."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}{did_you_mean(name, registry)}") from None
