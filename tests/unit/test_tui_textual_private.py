"""Private Textual names: only :mod:`tui.textual_private` uses them, on the versions it
was written for.

The installed Textual must be in :data:`~tui.textual_private.WRITTEN_FOR` (else check
the names that module lists against the new Textual, then widen the range); the
private names it relies on must still be there; and no other TUI module defines,
overrides or reads a name that Textual's own classes use privately (our attributes
must not collide with theirs either), nor imports a private Textual module.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from textual.widgets import DataTable

import tui
from tui import textual_private
from tui.textual_private import PRIVATE_NAMES_FIT, TEXTUAL_VERSION, WRITTEN_FOR, _release

TUI_DIR = Path(tui.__file__).parent
ALLOWED = "tui.textual_private"


def test_the_installed_textual_is_one_the_private_names_were_read_in() -> None:
    assert PRIVATE_NAMES_FIT, (
        f"Textual {TEXTUAL_VERSION} is outside {WRITTEN_FOR}: check the private names"
        " tui/textual_private.py lists against it, then widen WRITTEN_FOR"
    )
    assert _release("8.2.8") == (8, 2, 8) and _release("9.0.0rc1") == (9, 0, 0)


def test_the_private_names_are_still_there() -> None:
    params = list(inspect.signature(DataTable._render_cell).parameters)
    assert params == ["self", "row_index", "column_index", "base_style", "width", "cursor", "hover"]
    assert "self._show_hover_cursor" in inspect.getsource(DataTable.__init__)
    assert "_render_cell" in vars(textual_private.CellCacheTable)


def _modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages([str(TUI_DIR)], prefix="tui.")
        if info.name != "tui.__main__"
    ]


def _textual_private_names(cls: type) -> set[str]:
    """The private names Textual's classes among ``cls``'s bases define or set."""
    names: set[str] = set()
    for base in cls.__mro__:
        if not base.__module__.startswith("textual"):
            continue
        names |= {n for n in vars(base) if n.startswith("_") and not n.startswith("__")}
        names |= set(re.findall(r"self\.(_[a-z]\w*)", inspect.getsource(base)))
    return names


_OURS = re.compile(r"self\.(_[a-z]\w*)|def (_[a-z]\w*)|super\(\)\.(_[a-z]\w*)|\"(_[a-z]\w*)\"")


def test_no_other_module_uses_a_private_textual_name() -> None:
    found = []
    for name in _modules():
        if name == ALLOWED:
            continue
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            theirs = _textual_private_names(cls)
            ours = {n for groups in _OURS.findall(inspect.getsource(cls)) for n in groups if n}
            found += [f"{name}.{cls.__name__}: {n}" for n in sorted(ours & theirs)]
    assert not found, "private Textual names outside tui/textual_private.py: " + ", ".join(found)


def test_no_module_imports_a_private_textual_module() -> None:
    found = []
    for path in TUI_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            found += [
                f"{path.name}: {m}"
                for m in modules
                if m.startswith("textual") and any(p.startswith("_") for p in m.split("."))
            ]
    assert not found
