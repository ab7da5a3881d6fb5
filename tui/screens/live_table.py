"""The base of the live table views: summary bar, a record table, ``/`` filter, keys.

This module owns :class:`LiveTableScreen`. A view says which table it shows
(:meth:`~LiveTableScreen.compose_table`) and which records of a snapshot go in it
(:meth:`~LiveTableScreen.records`); this class watches the app's
:attr:`~tui.host.TuiHost.snapshot` and hands each one to the table while the
view is on screen (and at once when it comes back), keeps the table's title
(count, filter, sort) current, and runs the filter line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input

from tui.host import TuiHost, host_of
from tui.source import ClusterSnapshot
from tui.widgets.filter_input import FilterInput
from tui.widgets.key_bar import KeyBar
from tui.widgets.record_table import RecordTable
from tui.widgets.summary_bar import SummaryBar


class LiveTableScreen(Screen[None]):
    """A view of one :class:`~tui.widgets.record_table.RecordTable`, refreshed live."""

    TABLE_TITLE: ClassVar[str] = ""
    AUTO_FOCUS = "RecordTable"

    BINDINGS: ClassVar[list[BindingType]] = [
        # A priority binding runs as the app reads the key, so the focus is on the filter
        # line before the keys typed after "/" are handed out (check_action lets a "/"
        # typed in the line through).
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
    ]

    # -- what a view says ------------------------------------------------------------

    def compose_table(self) -> RecordTable[Any]:
        """The view's table (a new widget)."""
        raise NotImplementedError

    def records(self, snapshot: ClusterSnapshot) -> Sequence[Any]:
        """The records of ``snapshot`` the table shows."""
        raise NotImplementedError

    def subtitle(self, snapshot: ClusterSnapshot | None) -> str:
        """A note under the table (e.g. why it is empty); none by default."""
        return ""

    # -- the rest --------------------------------------------------------------------

    @property
    def bacalhau(self) -> TuiHost:
        return host_of(self)

    @property
    def table(self) -> RecordTable[Any]:
        return self.query_one(RecordTable)

    def compose(self) -> ComposeResult:
        yield SummaryBar()
        yield self.compose_table()
        yield FilterInput(id="filter")
        yield KeyBar()

    def on_mount(self) -> None:
        self.watch(self.app, "snapshot", self._on_snapshot, init=True)

    def on_screen_resume(self) -> None:
        self._on_snapshot(self.bacalhau.snapshot)

    def _on_snapshot(self, snapshot: ClusterSnapshot | None) -> None:
        if snapshot is None or not self.is_current:
            return
        self.query_one(SummaryBar).snapshot = snapshot
        self.table.show(self.records(snapshot), snapshot.at)
        self._retitle()

    def _retitle(self) -> None:
        table = self.table
        table.border_title = table.title(self.TABLE_TITLE)
        table.border_subtitle = self.subtitle(self.bacalhau.snapshot)

    def on_record_table_sort_changed(self, event: RecordTable.SortChanged) -> None:
        self._retitle()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "/" typed in the filter line is a character of the filter
        return not (action == "filter" and isinstance(self.focused, Input))

    def action_filter(self) -> None:
        # Not composed yet (the app mounts every view once as it starts, and a key
        # typed then may reach one that is being mounted): nothing to open.
        for line in self.query(FilterInput):
            line.open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.table.filter_text = event.value
        self._retitle()

    def on_filter_input_closed(self, event: FilterInput.Closed) -> None:
        self.set_focus(self.table)
