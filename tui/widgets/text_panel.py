"""A scrollable block of Rich text that repaints only when its text changed.

This module owns :class:`TextPanel`, the base of the job view's panels (the header,
the gates, the results): a refresh hands it the text it should show, and it updates
its :class:`~textual.widgets.Static` only if that differs from what it shows, so an
unchanged job costs no layout or repaint.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


def _signature(text: Text) -> tuple[Any, ...]:
    return (text.plain, tuple(text.spans), text.style)


class TextPanel(VerticalScroll, can_focus=False):
    """Rich text in a scrollable panel (its size and border come from the CSS)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(classes="panel-text")

    @property
    def text(self) -> str:
        """The plain text shown (for tests)."""
        return "" if self._shown is None else str(self._shown[0])

    def show_text(self, text: Text) -> None:
        signature = _signature(text)
        if signature == self._shown:
            return
        self._shown = signature
        self.query_one(".panel-text", Static).update(text)
