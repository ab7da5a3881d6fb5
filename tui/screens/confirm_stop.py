"""The quit question of a TUI opened by ``devstack up``: "Stop the cluster? (y/n)".

This module owns :class:`ConfirmStopScreen`, a modal that dismisses with ``True``
(stop it: ``y``), ``False`` (leave it running: ``n``) or ``None`` (stay in the TUI:
``esc``).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmStopScreen(ModalScreen[bool | None]):
    """Stop the cluster (y), leave it running (n), or stay (esc)?"""

    DEFAULT_CSS = """
    ConfirmStopScreen {
        align: center middle;
    }
    ConfirmStopScreen > Vertical {
        width: 60;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    ConfirmStopScreen Label {
        width: 100%;
        margin-bottom: 1;
    }
    ConfirmStopScreen Horizontal {
        height: auto;
        align: center middle;
    }
    ConfirmStopScreen Button {
        margin: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n", "answer(False)", "Leave it running"),
        Binding("escape", "answer(None)", "Stay"),
    ]

    def __init__(self, nodes: int | None = None) -> None:
        super().__init__()
        self._node_count = nodes

    def compose(self) -> ComposeResult:
        what = f"its {self._node_count} nodes" if self._node_count else "its nodes"
        with Vertical():
            yield Label("[b]Stop the cluster? (y/n)[/b]")
            yield Label(
                f"y stops {what} and their containers (`devstack down`);"
                " n leaves it running; esc goes back."
            )
            with Horizontal():
                yield Button("Stop it (y)", variant="error", id="yes")
                yield Button("Leave it running (n)", variant="primary", id="no")

    def action_answer(self, answer: bool | None) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")
