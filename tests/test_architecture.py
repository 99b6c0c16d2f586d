"""The shape of the package: layers import downward only, so the import graph has no circle.

Read from the source with :mod:`ast`, imports inside functions included (a function-level
import that dodges a circle is still a circle); imports under ``if TYPE_CHECKING:`` are for
the type checker and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "ladle"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The ladle module an imported name lives in (a module, or the module that defines it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ladle"):
            for alias in node.names:
                owner = _owner(f"{node.module}.{alias.name}") or _owner(node.module)
                if owner:
                    yield owner
        elif isinstance(node, ast.Import):
            for alias in node.names:
                owner = _owner(alias.name) if alias.name.startswith("ladle") else None
                if owner:
                    yield owner


GRAPH = {name: set(_imports(path)) - {name} for name, path in MODULES.items()}


def _circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in GRAPH[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return circles


def test_the_import_graph_has_no_circle() -> None:
    """No module reaches, through any chain of imports, back to itself."""
    assert _circles() == []


def test_the_registry_of_kinds_imports_no_layer() -> None:
    """ladle.kinds sits below config, sources, steps and plugins: it imports only errors."""
    assert GRAPH["ladle.kinds"] == {"ladle.errors"}


def test_config_reaches_sources_and_steps_only_through_kinds() -> None:
    """Config validates option blocks through the registry, never by importing a source or
    step module."""
    layers = ("ladle.sources", "ladle.steps", "ladle.plugins", "ladle.pipeline")
    assert [m for m in GRAPH["ladle.config"] if m.startswith(layers)] == []


def test_the_check_sees_a_circle_when_there_is_one() -> None:
    """The search is real: a graph with a circle yields it."""
    saved = dict(GRAPH)
    try:
        GRAPH["ladle.errors"] = {"ladle.kinds"}
        assert ["ladle.errors", "ladle.kinds"] in _circles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
