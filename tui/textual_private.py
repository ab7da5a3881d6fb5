"""Every use the TUI makes of a private name of Textual's, and the versions it fits.

The rest of the TUI uses Textual's public API only; this module owns the exceptions,
so that a Textual upgrade has one place to check:

- ``DataTable._render_cell(row_index, column_index, base_style, width, cursor,
  hover)``, overridden by :class:`CellCacheTable`. DataTable keys its own cell cache
  on a counter that every ``update_cell`` bumps, so one changed figure re-renders
  every visible cell: ~145 ms of CPU for a 50-row table on a 2-core machine, long
  enough to hold up a key press. Behind :class:`CellCacheTable` a cell is rendered
  again only if what it shows (a new object), its place, its style or the table's
  state changed (~75 ms for the same refresh). No public hook renders a cell.
- ``DataTable._show_hover_cursor``, read into that cache's key: whether the hover
  cursor is drawn, which DataTable's own key holds too and no public name tells.

:data:`TEXTUAL_VERSION` is the installed Textual's version and
:data:`PRIVATE_NAMES_FIT` whether it is in :data:`WRITTEN_FOR`, the range the two
names above were read in. Outside it nothing private is touched: the override is
not defined, and :class:`CellCacheTable` renders as a plain ``DataTable`` does (the
same cells, at DataTable's own cost). ``tests/unit/test_tui_textual_private.py``
fails on such a version, so an upgrade is checked here before the range is widened.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any, Generic, TypeVar

from rich.style import Style
from textual.cache import LRUCache
from textual.widgets import DataTable

C = TypeVar("C")

WRITTEN_FOR = ((8, 0), (9, 0))
"""Textual versions ``[low, high)`` whose DataTable has the private names above."""


def _release(text: str) -> tuple[int, ...]:
    """``(8, 2, 8)`` for ``"8.2.8"`` (a pre-release suffix such as ``rc1`` ignored)."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


TEXTUAL_VERSION = version("textual")
PRIVATE_NAMES_FIT = WRITTEN_FOR[0] <= _release(TEXTUAL_VERSION) < WRITTEN_FOR[1]


class CellCacheTable(DataTable[C], Generic[C]):
    """A DataTable whose cells are rendered again only when what they show changed.

    A subclass says what a cell shows with :meth:`cell_content`: the object in the
    cell (a new object when its content changed), or None to leave the cell to
    DataTable's own rendering.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cell_lines_by_look: LRUCache[tuple[Any, ...], tuple[object, Any]] = LRUCache(4096)

    def cell_content(self, row_index: int, column_index: int) -> object | None:
        """What cell (``row_index``, ``column_index``) shows (row -1: the header), or
        None if it is not to be cached."""
        return None

    def cursor_look(self) -> tuple[Any, ...]:
        """What restyles the cursor's and the hovered cells: focus, hover and theme (every
        other cell's look is in the ``base_style`` it is rendered with)."""
        return (
            self.has_focus,
            self.mouse_hover,
            self.get_component_rich_style("datatable--cursor"),
            self.get_component_rich_style("datatable--hover"),
        )

    if PRIVATE_NAMES_FIT:

        def _render_cell(
            self,
            row_index: int,
            column_index: int,
            base_style: Style,
            width: int,
            cursor: bool = False,
            hover: bool = False,
        ) -> Any:
            cell = self.cell_content(row_index, column_index) if column_index >= 0 else None
            if cell is None:
                return super()._render_cell(
                    row_index, column_index, base_style, width, cursor, hover
                )
            key = (
                row_index,
                column_index,
                base_style,
                width,
                cursor,
                hover,
                hover and self._show_hover_cursor,
                self.cursor_look() if cursor or hover else None,
            )
            cached = self._cell_lines_by_look.get(key)
            if cached is not None and cached[0] is cell:
                return cached[1]
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._cell_lines_by_look[key] = (cell, lines)
            return lines
