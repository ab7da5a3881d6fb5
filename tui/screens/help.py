"""The ``?`` help screen: the keys of the view it was opened from, and its columns.

This module owns :class:`HelpScreen`, a modal over the current view. It lists the
bindings active on that view (so the keys a view adds appear without editing this
file), then the view's ``HELP_INTRO`` and what each of its ``HELP_COLUMNS`` shows
(both optional class attributes of a screen). ``esc``, ``q`` or ``?`` closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

# DataTable's own movement keys: summed up in one line rather than listed one by one.
_MOVES = ("cursor_", "page_", "scroll_")


def key_rows(screen: Screen[Any]) -> list[tuple[str, str]]:
    """(key, what it does) for the keys active on ``screen``, app keys included."""
    app = screen.app
    rows: dict[str, list[str]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if (
            binding.system
            or not binding.description
            or binding.action.startswith(_MOVES)
            or binding.action == "command_palette"  # listed below, with what it offers
            or (binding.action == "select_cursor" and binding.description == "Select")
        ):
            continue
        keys = rows.setdefault(binding.description, [])
        key = app.get_key_display(binding)
        if key not in keys:
            keys.append(key)
    found = [(" ".join(keys), what) for what, keys in rows.items()]
    return [
        *found,
        ("ctrl+p", "command palette: switch views, theme, refresh, quit"),
        ("↑ ↓ pgup pgdn home end", "move in the table"),
        ("mouse", "click a row to pick it, a column's header to sort by it"),
    ]


def _table(header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
    table.add_column(header[0], style="bold", no_wrap=True, ratio=1)
    table.add_column(header[1], ratio=4)
    for left, right in rows:
        table.add_row(left, right)
    return table


def help_renderable(screen: Screen[Any]) -> RenderableType:
    """Everything the help screen shows for ``screen``."""
    parts: list[RenderableType] = [Text("Keys", style="bold underline")]
    parts.append(_table(("key", "does"), key_rows(screen)))
    intro = getattr(screen, "HELP_INTRO", "")
    columns = getattr(screen, "HELP_COLUMNS", ())
    if intro or columns:
        title = getattr(screen, "HELP_TITLE", "This view")
        parts += [Text(""), Text(title, style="bold underline")]
    if intro:
        parts += [Text(intro), Text("")]
    if columns:
        parts.append(_table(("column", "shows"), [(c.label, c.help) for c in columns]))
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    """Keys and columns of the view below."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 90%;
        max-width: 110;
        height: 90%;
        border: thick $primary;
        border-title-align: center;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", key_display="esc"),
    ]

    def __init__(self, under: Screen[Any]) -> None:
        super().__init__()
        self._content = help_renderable(under)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "Help · esc closes"
            yield Static(self._content)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
