"""YAML reading that keeps every value's line, rejects duplicate keys and avoids YAML 1.1 traps.

Scalars are resolved with the YAML 1.2 core schema: only true/false are booleans (``no``, ``on``,
``yes`` stay strings, and a bool field then rejects them with a hint), and ``1e-2`` is a float.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from naspoison.registry import did_you_mean

Path_ = tuple  # a location inside the document: ("families", "poisoning", "budgets", 2)


class SuiteError(Exception):
    """One or more problems in a suite file; each carries file, line and key path."""

    def __init__(self, problems: list[tuple[str, int | None, str, str]]):
        self.problems = problems  # (file, line, key path, message)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for file, line, key, msg in self.problems:
            where = f"{file}:{line}" if line else file
            out.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
        return out


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.2 core schema resolvers instead of PyYAML's YAML 1.1 ones.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _bool12(loader, node):
    return node.value.lower() == "true"


def _int12(loader, node):
    v = node.value
    return int(v, 8) if v.startswith("0o") else int(v, 16) if v.startswith("0x") else int(v)


_Loader.add_constructor("tag:yaml.org,2002:bool", _bool12)
_Loader.add_constructor("tag:yaml.org,2002:int", _int12)

_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}
YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF", "Y", "N"}


MAX_BYTES = 10 * 2**20   # a suite is a page of text; this is a typo'd path or a binary file
MAX_VALUES = 200_000     # values after alias expansion ("billion laughs": a few lines that expand to gigabytes)
MAX_DEPTH = 64           # nesting (a recursive alias would otherwise recurse forever)


def load_with_lines(path: str | Path) -> tuple[Any, dict[Path_, int]]:
    """Parse ``path``; return the data and a map from key path to 1-based line number."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SuiteError([(str(path), None, "", f"{path.stat().st_size:,} bytes: too large for a suite file "
                                                     f"(limit {MAX_BYTES:,})")])
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SuiteError([(str(path), None, "", f"cannot read: {e.strerror or e}")]) from None
    except UnicodeDecodeError as e:
        raise SuiteError([(str(path), None, "", f"not a UTF-8 text file (byte {e.start}: {e.reason}); "
                                                "a suite is YAML text")]) from None
    if "\x00" in text:
        raise SuiteError([(str(path), text[:text.index("\x00")].count("\n") + 1, "",
                           "contains NUL bytes: not a YAML text file")])
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SuiteError([(str(path), mark.line + 1 if mark else None, "", f"not valid YAML: {e.problem if hasattr(e, 'problem') else e}")]) from None
    if root is None:
        raise SuiteError([(str(path), 1, "", "the file is empty")])
    lines: dict[Path_, int] = {}
    problems: list[tuple[str, int | None, str, str]] = []
    loader = _Loader("")
    count = [0]

    class _TooBig(Exception):
        pass

    def build(node, at: Path_):
        count[0] += 1
        if count[0] > MAX_VALUES or len(at) > MAX_DEPTH:
            raise _TooBig(node.start_mark.line + 1)
        lines.setdefault(at, node.start_mark.line + 1)
        if node.tag not in _PLAIN_TAGS:  # no !!python/object or other constructors, ever
            problems.append((str(path), node.start_mark.line + 1, dotted(at), f"tag {node.tag} is not allowed"))
            return None
        if isinstance(node, yaml.MappingNode):
            out = {}
            for knode, vnode in node.value:
                key = loader.construct_object(knode, deep=True)
                if not isinstance(key, str):
                    problems.append((str(path), knode.start_mark.line + 1, dotted(at),
                                     f"key {key!r} must be a string"))
                    key = str(key)
                if key in out:
                    problems.append((str(path), knode.start_mark.line + 1, dotted(at + (key,)),
                                     f"duplicate key (first given on line {lines[at + (key,)]})"))
                    continue
                lines[at + (key,)] = knode.start_mark.line + 1
                out[key] = build(vnode, at + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, at + (i,)) for i, item in enumerate(node.value)]
        value = loader.construct_object(node, deep=True)
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((str(path), node.start_mark.line + 1, dotted(at),
                             f"{node.value} is not a finite number; every number in a suite must be finite"))
        return value

    try:
        data = build(root, ())
    except yaml.YAMLError as e:
        raise SuiteError([(str(path), None, "", f"not valid YAML: {e}")]) from None
    except _TooBig as e:
        raise SuiteError([(str(path), e.args[0], "", f"expands to more than {MAX_VALUES:,} values or {MAX_DEPTH} "
                                                     "levels (YAML aliases?); a suite is far smaller")]) from None
    if problems:
        raise SuiteError(problems)
    return data, lines


def dotted(at: Path_) -> str:
    s = ""
    for part in at:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s


def line_of(lines: dict[Path_, int], at: Path_) -> int | None:
    """The line of the deepest known prefix of ``at``."""
    at = tuple(at)
    while at:
        if at in lines:
            return lines[at]
        at = at[:-1]
    return lines.get(())


def validation_problems(err, known) -> list[tuple[tuple, str]]:
    """A pydantic ValidationError as (location, message) pairs in a suite author's words; an unknown key
    suggests the nearest of ``known``."""
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = f"unknown key{did_you_mean(loc[-1], known)}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"]
            val = e.get("input")
            if isinstance(val, str) and val in YAML11_BOOLS and "bool" in e["type"]:
                msg += f" (YAML 1.1 would read {val!r} as a boolean; write true or false)"
            elif isinstance(val, str) and e["type"] in ("float_type", "int_type", "float_parsing", "int_parsing"):
                msg += f" (got the string {val!r}; write a plain number, e.g. 0.01 or 1.0e-2)"
            elif val is not None and not isinstance(val, (dict, list)):
                msg += f" (got {val!r})"
        out.append((loc, msg))
    return out
