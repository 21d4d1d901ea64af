"""The package's import graph (issue 23): no cycle among module-level imports, few imports hidden inside
functions (only the heavy libraries, loaded lazily so the reading commands start without them), and every
module importable on its own in a fresh interpreter.

The graph is read from the source with ``ast``, not from ``sys.modules``: an import that would close a cycle
fails only for some import orders, so running the imports cannot show it reliably.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "naspoison"
# deliberately lazy: what the torch-free commands (report, --check, --plan) must not load
HEAVY = ("torch", "torchvision", "sklearn", "scipy", "matplotlib", "diffusers", "submitit", "nats_bench",
         "nas_201_api", "rich")
# imports of naspoison or light libraries inside functions, over the whole tree (before issue 23: 127); run/,
# stages/ and store/ have none left
MAX_FUNCTION_IMPORTS = 61


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, known: dict) -> list[str]:
    """The modules an import statement runs: the named module and each package above it (Python initialises
    them first), except the importer's own ancestors, which are always initialised before it."""
    if isinstance(node, ast.Import):
        named = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importer's package
            pkg = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                pkg = pkg.rpartition(".")[0]
            base = f"{pkg}.{base}" if base else pkg
        # ``from pkg import sub`` runs pkg.sub when it is a module; ``from pkg import name`` only pkg
        named = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    if is_package:
        ancestors.add(name)
    out = []
    for target in named:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix not in ancestors and prefix != name:
                out.append(prefix)
    return out


def _module_level(tree: ast.Module):
    """Import statements that run when the module is imported (top level, or under if/try at top level)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # never runs
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack += getattr(node, field, [])
        elif isinstance(node, ast.ExceptHandler):
            stack += node.body


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {}
    for name, f in known.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        graph[name] = {t for node in _module_level(tree)
                       for t in _targets(node, name, f.name == "__init__.py", known)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def function_imports() -> list[str]:
    """``file:line module`` for every import inside a function that is not of a heavy library."""
    out = []
    for f in modules().values():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = ["." * node.level + (node.module or "")]
                else:
                    continue
                for m in mods:
                    if m.split(".")[0] not in HEAVY:
                        out.append(f"{f.relative_to(PACKAGE.parent)}:{node.lineno} {m}")
    return sorted(set(out))  # a nested function's import is walked twice


def test_the_graph_sees_a_known_cycle():
    """The checker itself: a two-module cycle, and a cycle through a package's __init__, are found."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    known = {"p": 1, "p.x": 1, "q": 1, "q.y": 1}
    # q.y imports p.x: Python runs p (its __init__) first, and p imports q.y back
    stmt = ast.parse("from p.x import f").body[0]
    assert _targets(stmt, "q.y", False, known) == ["p", "p.x"]
    # a sibling import by full path does not depend on the importer's own package
    assert _targets(ast.parse("from q.z import f").body[0], "q.y", False, {**known, "q.z": 1}) == ["q.z"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_few_imports_inside_functions():
    found = function_imports()
    mine = [f for f in found if f.split("/")[1] in ("run", "stages", "store")]
    assert mine == [], "imports inside functions in run/, stages/, store/:\n" + "\n".join(mine)
    assert len(found) <= MAX_FUNCTION_IMPORTS, "\n".join(found)


@pytest.mark.slow
def test_every_module_imports_alone():
    """Each module in a fresh interpreter: an import cycle that only bites for some import orders fails here."""
    failed = []
    for name in modules():
        out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=PACKAGE.parent, capture_output=True,
                             text=True, timeout=300, check=False)
        if out.returncode != 0:
            failed.append(f"{name}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    assert not failed, "\n".join(failed)


if __name__ == "__main__":  # figures for the issue: python tests/test_imports.py
    found = function_imports()
    by_dir: dict[str, int] = {}
    for f in found:
        d = f.split("/")[1] if f.count("/") > 1 else "(top)"
        by_dir[d] = by_dir.get(d, 0) + 1
    print(len(found), "imports inside functions (not heavy):", by_dir)
    print("cycle:", find_cycle(import_graph()))
