"""The import graph of the project's packages: no circle, and a TUI free of the node.

Read from the source with :mod:`ast`, so every import counts: at the top of a
module, inside a function, or under ``TYPE_CHECKING`` (README, Architecture: the
parts and where they live).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "devstack", "tui", "profiles")
# What the TUI may use of the project: the API client, the spec schema, the
# devstack's state file, and the profiling toolkit's pure merging of lock reports.
TUI_MAY_IMPORT = ("tui", "devstack.client", "devstack.state", "node.models", "profiles")
NEVER_IN_TUI = ("libp2p", "trio", "node.p2p")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(module: str, path: Path, modules: Mapping[str, Path]) -> Iterator[str]:
    """Every dotted name ``module`` imports, relative imports resolved. ``from a
    import b`` is ``a.b`` when that is a module (so a package is not taken for its
    submodules), else ``a``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield submodule if submodule in modules else source


def owner(name: str, modules: Mapping[str, Path]) -> str | None:
    """The project module ``name`` is, or is a name in (None: not the project's)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per module: the project modules it imports, and every dotted name it imports."""
    modules = project_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    names: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in imported_names(module, path, modules):
            names[module].add(name)
            target = owner(name, modules)
            if target is not None and target != module:
                edges[module].add(target)
    return edges, names


def circles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def reachable(start: str, edges: Mapping[str, set[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read_from_every_package() -> None:
    edges, _ = import_graph()
    for package in PACKAGES:
        assert package in edges
    assert "node.models" in edges and "tui.app" in edges
    assert edges["devstack.cli"], "the CLI imports project modules, so edges are found"


def test_no_import_circle() -> None:
    edges, _ = import_graph()
    assert circles(edges) == []


def test_tui_imports_only_the_client_the_schema_and_the_state_file() -> None:
    edges, _ = import_graph()
    strays = {
        (module, target)
        for module, targets in edges.items()
        if module.startswith("tui")
        for target in targets
        if not _within(target, TUI_MAY_IMPORT)
    }
    assert strays == set()


def test_tui_never_reaches_libp2p_trio_or_the_node_runtime() -> None:
    edges, names = import_graph()
    for module in (m for m in edges if m.startswith("tui")):
        closure = reachable(module, edges)
        bad = sorted(
            f"{via} imports {name}"
            for via in closure
            for name in names[via]
            if _within(name, NEVER_IN_TUI)
        )
        assert bad == [], f"{module} reaches the node runtime: {bad}"


# -- the checks themselves, on small graphs -------------------------------------------


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_circles_finds_each_strongly_connected_component(
    edges: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert sorted(circles(edges)) == expected


def test_imported_names_sees_function_local_type_only_and_relative_imports(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mod.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from node.requester import Requester\n"
        "def f():\n    import trio\n"
        "from . import sibling\n"
    )
    modules = {"node.p2p.sibling": path, "node.requester": path}
    names = set(imported_names("node.p2p.mod", path, modules))
    assert {"node.requester", "trio", "node.p2p.sibling"} <= names
