"""Imports flow one way (cli -> dispatcher/goals/schedules -> board -> models/db): no module
of kanban imports, at any depth, a module that imports it back. Every import counts: at the
top of a file, inside a function (a lazy import is still a dependency) and under
TYPE_CHECKING (a type-only cycle is still a cycle a reader has to hold in their head)."""

from __future__ import annotations

import ast
from pathlib import Path

import kanban

ROOT = Path(kanban.__file__).parent
# Known, and owned elsewhere: the web app's factory imports its page and route modules, which
# import the app's HTTP helpers (issue 14). Listed here so that any *other* cycle fails; the
# fix is to move those helpers into a module of their own.
KNOWN = [["kanban.web.app", "kanban.web.pages", "kanban.web.routes"]]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                edges.add(sub if sub in known else base)
    return {e for e in edges if e in known and e not in ("kanban", name)}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_of_kanban_imports_a_module_that_imports_it_back() -> None:
    graph = _graph()
    assert "kanban.api" in graph and "kanban.goals" in graph["kanban.api"]  # the walk works
    assert [c for c in _cycles(graph) if c not in KNOWN] == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_board_verbs_import_nothing_above_them() -> None:
    above = {"kanban.api", "kanban.goals", "kanban.schedules", "kanban.dispatcher"}
    graph = _graph()
    for name, edges in graph.items():
        if name.startswith("kanban.board"):
            assert not edges & above, f"{name} imports {edges & above}"
        if name.startswith("kanban.cli") or name == "kanban.__main__":
            continue
        assert not any(e.startswith("kanban.cli") for e in edges), f"{name} imports the CLI"
