"""Grid expansion: a profile of a suite becomes a list of trials (one chain of cells each), family by family
(naspoison.families), and the command line's ways of choosing among them (``--only``, ``--shard``)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from naspoison.families import FAMILIES, ExpandContext, Trial
from naspoison.suite.schema import Suite


@dataclass
class Expansion:
    trials: list[Trial]
    skipped: list[str]  # combinations the structure rules out, with the reason


def expand(suite: Suite, profile_name: str) -> Expansion:
    prof = suite.profile(profile_name)
    ctx = ExpandContext(prof, prof.dataset.model_dump(), prof.train.model_dump(), range(prof.seeds), [])
    trials: list[Trial] = []
    for name, fam in FAMILIES.items():
        config = getattr(suite.model.families, name)
        if config is not None:
            trials += fam.expand(config, ctx)
    return Expansion(trials, sorted(set(ctx.skipped)))


ONLY_FIELDS = ("family", "row", "attack", "budget", "algorithm", "seed")


def select(trials: list[Trial], only: str | None) -> list[Trial]:
    """Filter by ``--only``: comma-separated ``field=pattern`` terms (all must hold), each pattern a
    shell glob, alternatives with ``|``; fields: family, row (or attack), budget, algorithm, seed.
    ``row`` is the row's name in its table (an attack, a search source, a scenario...; ``attack`` says the same).
    Example: ``--only 'attack=gaussian_noise|none,seed=0'``."""
    if not only:
        return trials
    terms = []
    for term in only.split(","):
        if "=" not in term:
            raise ValueError(f"--only term {term!r} is not field=pattern")
        k, v = (s.strip() for s in term.split("=", 1))
        if k not in ONLY_FIELDS:
            raise ValueError(f"--only field {k!r} unknown; use {', '.join(ONLY_FIELDS[:-1])} or {ONLY_FIELDS[-1]}")
        terms.append((k, v.split("|")))

    return [t for t in trials
            if all(any(fnmatch.fnmatchcase(_fmt(t.fields()[k]), pat) for pat in pats) for k, pats in terms)]


def _fmt(v) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def nearest_values(trials: list[Trial], only: str) -> str:
    """Why ``--only`` selects nothing: per term that matches no trial, the closest values that exist."""
    import difflib

    out = []
    for term in only.split(","):
        k, v = (s.strip() for s in term.split("=", 1))
        pats = v.split("|")
        values = sorted({_fmt(t.fields()[k]) for t in trials} - {""}, key=lambda s: (len(s), s))
        if any(fnmatch.fnmatchcase(x, pat) for x in values for pat in pats):
            continue
        close = sorted({c for pat in pats for c in difflib.get_close_matches(pat, values, n=3, cutoff=0.5)})
        shown = ", ".join(values[:12]) + (" …" if len(values) > 12 else "")
        out.append(f"{k}={v} matches nothing" + (f"; nearest: {', '.join(close)}" if close else "")
                   + f" ({k} values: {shown})")
    return ("; " + "; ".join(out)) if out else "; each term matches some trials, but no trial matches all of them"


def shard(trials: list[Trial], spec: str | None) -> list[Trial]:
    """``--shard i/N``: every N-th trial from the i-th (0-based), so shards are balanced and disjoint."""
    if not spec:
        return trials
    try:
        i, n = (int(s) for s in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r} must be i/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {spec!r}: need 0 <= i < N")
    return trials[i::n]
