"""The ``/`` filter line under a table.

This module owns :class:`FilterInput`: an :class:`~textual.widgets.Input` hidden until
the screen opens it. Typing filters live (the screen watches ``Input.Changed``);
``enter`` keeps the filter and goes back to the table; ``esc`` clears it and closes.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    """A one-line filter; every word typed must occur in a row for it to show."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_and_close", "Clear filter", show=True),
    ]

    DEFAULT_CSS = """
    FilterInput {
        dock: bottom;
        display: none;
        height: 3;
        border: tall $accent;
    }
    FilterInput.-open {
        display: block;
    }
    """

    class Closed(Message):
        """The filter line closed (``enter`` keeps the filter, ``esc`` clears it)."""

        def __init__(self, filter_input: FilterInput) -> None:
            super().__init__()
            self.filter_input = filter_input

        @property
        def control(self) -> FilterInput:
            return self.filter_input

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="filter: words that must all occur (esc clears)", id=id)

    def open(self) -> None:
        """Show the line and take the focus, at once: keys typed right after ``/``
        (already queued behind it) must reach this line, not the table or the app."""
        self.add_class("-open")
        self.screen.set_focus(self)

    def close(self) -> None:
        self.remove_class("-open")
        self.post_message(self.Closed(self))

    def action_clear_and_close(self) -> None:
        self.value = ""
        self.close()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.close()
