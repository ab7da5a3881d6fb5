"""Messages that cross screens: "open this job", "open this node".

This module owns the app-level messages a widget posts when the user picks a record.
They bubble to the app, which opens the matching detail screen if the TUI has one
(:meth:`tui.app.BacalhauApp.open_job`, :meth:`~tui.app.BacalhauApp.open_node`).
"""

from __future__ import annotations

from textual.message import Message


class JobSelected(Message):
    """The user picked a job (``enter`` on a row of the jobs list)."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


class NodeSelected(Message):
    """The user picked a node (``enter`` on a row of the nodes table)."""

    def __init__(self, peer_id: str) -> None:
        super().__init__()
        self.peer_id = peer_id
