"""The ``p`` question of a node's view: "Profile node-3 for how many seconds?".

This module owns :class:`ProfilePrompt`, a modal with one number field (the last
duration asked, 10 s the first time). ``enter`` dismisses with the seconds (1 to
:data:`MAX_SECONDS`), ``esc`` with ``None``. Its styles are in ``node.tcss``, read
with the node view that opens it.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Number
from textual.widgets import Input, Label

DEFAULT_SECONDS = 10
MAX_SECONDS = 300  # what a node accepts (profiles.cpu.MAX_SECONDS)


class ProfilePrompt(ModalScreen[int | None]):
    """How many seconds to profile a node for."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, node: str, seconds: int = DEFAULT_SECONDS) -> None:
        super().__init__()
        self.node = node
        self.seconds = seconds

    def compose(self) -> ComposeResult:
        with Vertical(id="profile-prompt"):
            yield Label(f"[b]Profile {self.node} (CPU, pyinstrument) for how many seconds?[/b]")
            yield Input(
                str(self.seconds),
                type="integer",
                validators=[Number(minimum=1, maximum=MAX_SECONDS)],
                id="profile-seconds",
            )
            yield Label(
                f"1 to {MAX_SECONDS}. enter starts it, esc cancels. The node keeps running"
                " meanwhile; the files go to the devstack's profiles/ folder.",
                id="profile-hint",
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.validation_result is not None and not event.validation_result.is_valid:
            self.query_one("#profile-hint", Label).update(
                f"[red]a whole number of seconds from 1 to {MAX_SECONDS}, please[/red]"
            )
            return
        self.dismiss(int(event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)
