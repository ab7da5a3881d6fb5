"""A DataTable of frozen records, updated cell by cell, sortable and filterable.

This module owns :class:`RecordTable`, the base of the TUI's live tables
(:class:`~tui.widgets.node_table.NodeTable`, :class:`~tui.widgets.job_table.JobTable`),
and :class:`RecordColumn`, a column's description. Each refresh hands the table the
latest records (:meth:`RecordTable.show`); the table keeps one row per record key,
renders each cell and writes only the cells whose text or style changed
(``update_cell``), adds and removes rows only for records that appear, vanish or
stop matching the filter, and reorders rows (``sort``) only when the order changed,
keeping the cursor on the same record. It never rebuilds itself, and renders a cell
again only when what it shows changed (:class:`~tui.textual_private.CellCacheTable`).

Sorting: click a column's header (again to reverse), or ``<`` / ``>`` to move the
sort to the previous / next column and ``r`` to reverse it. Filtering: set
:attr:`RecordTable.filter_text` (every word must occur in the record's search text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Generic, Literal, TypeVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable

from tui.source import matches, sort_records
from tui.textual_private import CellCacheTable

R = TypeVar("R")

Cell = tuple[str, str]
"""A cell as text and a Rich style (``""`` for none); equal cells need no update."""


@lru_cache(maxsize=512)
def _style(style: str) -> Style:
    return Style.parse(style) if style else Style.null()


class CellText:
    """One line of text, padded or cut to the column's width, as one Rich segment.

    A cell's value in a :class:`RecordTable`. Rendering one costs about a quarter of
    what a Rich :class:`~rich.text.Text` does (26 against 99 µs here: no wrapping or
    justification machinery), and a 50-row table renders hundreds of them a refresh."""

    __slots__ = ("right", "style", "text")

    def __init__(self, text: str, style: str = "", right: bool = False) -> None:
        self.text, self.style, self.right = text, style, right

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        width = options.max_width
        text = self.text
        used = cell_len(text)
        if used > width:
            text = text[: max(0, width - 1)] + "…"
            used = cell_len(text)
        pad = " " * max(0, width - used)
        yield Segment(pad + text if self.right else text + pad, _style(self.style))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(cell_len(self.text), cell_len(self.text))

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class RecordColumn(Generic[R]):
    """One column of a :class:`RecordTable`.

    ``cell`` renders a record (``now`` is the snapshot's wall clock, for ages);
    ``sort`` is the raw value sorting uses (``None`` sorts last), or ``None`` if the
    column is not sortable; ``help`` says what the figure is, for the help screen.
    """

    key: str
    label: str
    width: int
    cell: Callable[[R, float], Cell]
    sort: Callable[[R], Any] | None = None
    justify: Literal["left", "right"] = "left"
    help: str = ""
    descending_first: bool = False  # a first click sorts largest first (figures, not names)


class RecordTable(CellCacheTable[CellText], Generic[R]):
    """Records as rows, keyed by :meth:`record_key`, rendered by :attr:`RECORD_COLUMNS`."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = ()
    DEFAULT_SORT: ClassVar[str] = ""
    DEFAULT_REVERSE: ClassVar[bool] = False

    _SORT_GROUP = Binding.Group("Sort", compact=True)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "less_than_sign",
            "sort_step(-1)",
            "Sort by the column to the left",
            key_display="<",
            group=_SORT_GROUP,
        ),
        Binding(
            "greater_than_sign",
            "sort_step(1)",
            "Sort by the column to the right",
            key_display=">",
            group=_SORT_GROUP,
        ),
        Binding("r", "sort_reverse", "Reverse the sort", show=False),
    ]

    DEFAULT_CSS = """
    RecordTable {
        height: 1fr;
    }
    """

    sort_column: reactive[str] = reactive("", init=False)
    """The key of the column rows are sorted by."""
    sort_reverse: reactive[bool] = reactive(False, init=False)
    """Largest first (or Z to A)."""
    filter_text: reactive[str] = reactive("", init=False)
    """Only records whose search text holds every word of this are shown."""

    class SortChanged(Message):
        """The sort column or direction changed."""

        def __init__(self, table: RecordTable[Any]) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> RecordTable[Any]:
            return self.table

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            name=name,
            id=id,
            classes=classes,
            cursor_type="row",
            zebra_stripes=True,
            cursor_foreground_priority="renderable",
        )
        self._specs: dict[str, RecordColumn[Any]] = {c.key: c for c in self.RECORD_COLUMNS}
        self._records: dict[str, R] = {}
        self._shown: dict[str, tuple[Cell, ...]] = {}  # what each row's cells show now
        # Each row's cell objects: the first is found by identity when sorting, and all
        # are what the cell cache checks its entries against (cell_content).
        self._cells: dict[str, list[CellText]] = {}
        self._order: list[str] = []
        self._now = 0.0
        self.set_reactive(RecordTable.sort_column, self.DEFAULT_SORT or self.RECORD_COLUMNS[0].key)
        self.set_reactive(RecordTable.sort_reverse, self.DEFAULT_REVERSE)

    # -- what subclasses say ---------------------------------------------------------

    def record_key(self, record: R) -> str:
        """The record's stable key (the row key)."""
        raise NotImplementedError

    def search_text(self, record: R) -> str:
        """The text ``filter_text`` is matched against."""
        raise NotImplementedError

    def tiebreak(self, record: R) -> Any:
        """The order of records whose sort values are equal."""
        return self.record_key(record)

    # -- lifecycle -------------------------------------------------------------------

    def on_mount(self) -> None:
        for spec in self.RECORD_COLUMNS:
            self.add_column(self._label(spec), width=spec.width, key=spec.key)
        self._apply()  # records handed over before the columns existed

    def _label(self, spec: RecordColumn[Any]) -> Text:
        arrow = ""
        if spec.key == self.sort_column:
            arrow = "▼" if self.sort_reverse else "▲"
        label = Text(spec.label, justify=spec.justify, no_wrap=True)
        if arrow:
            label = Text.assemble((spec.label, "bold"), arrow, justify=spec.justify, no_wrap=True)
        return label

    # -- the records -----------------------------------------------------------------

    @property
    def records(self) -> dict[str, R]:
        """Every record last shown, visible or not, by key."""
        return self._records

    @property
    def visible_keys(self) -> list[str]:
        """The keys of the rows shown, in their order on screen."""
        return list(self._order)

    @property
    def cursor_key(self) -> str | None:
        """The key of the record under the cursor, if any row is shown."""
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def title(self, what: str) -> str:
        """``Nodes 3``, or ``Nodes 2 of 3 · filter "up" · sort cpu% ▼``."""
        shown, total = len(self._order), len(self._records)
        title = f"{what} {shown}" if shown == total else f"{what} {shown} of {total}"
        if self.filter_text:
            title += f' · filter "{self.filter_text}"'
        spec = self._specs.get(self.sort_column)
        if spec is not None:
            title += f" · sort {spec.label} {'▼' if self.sort_reverse else '▲'}"
        return title

    def cell_text(self, key: str, column: str) -> str:
        """The text a cell shows now (for tests and for the screen's own use)."""
        index = [c.key for c in self.RECORD_COLUMNS].index(column)
        return self._shown[key][index][0]

    def show(self, records: Sequence[R], now: float) -> None:
        """Make the table show ``records`` (rendered with ``now`` as the wall clock)."""
        self._records = {self.record_key(r): r for r in records}
        self._now = now
        self._apply()

    def _apply(self, *, resort: bool = False) -> None:
        if not self.columns:  # not mounted yet: on_mount adds columns, then refresh
            return
        spec = self._specs.get(self.sort_column)
        visible = [
            r for r in self._records.values() if matches(self.search_text(r), self.filter_text)
        ]
        if spec is not None and spec.sort is not None:
            ordered = sort_records(
                visible, spec.sort, reverse=self.sort_reverse, tiebreak=self.tiebreak
            )
        else:
            ordered = sorted(visible, key=self.tiebreak)
        wanted = [self.record_key(r) for r in ordered]
        cursor_key = self.cursor_key

        gone = set(self._shown) - set(wanted)
        for key in gone:
            self.remove_row(key)
            del self._shown[key]
            del self._cells[key]
        appended = False
        for record, key in zip(ordered, wanted, strict=True):
            cells = tuple(c.cell(record, self._now) for c in self.RECORD_COLUMNS)
            old = self._shown.get(key)
            if old is None:
                texts = [
                    self._text(c, cell) for c, cell in zip(self.RECORD_COLUMNS, cells, strict=True)
                ]
                self._cells[key] = texts
                self.add_row(*texts, key=key)
                appended = True
            else:
                objects = self._cells[key]
                for index, (spec_i, before, after) in enumerate(
                    zip(self.RECORD_COLUMNS, old, cells, strict=True)
                ):
                    if before != after:
                        objects[index] = text = self._text(spec_i, after)
                        self.update_cell(key, spec_i.key, text)
            self._shown[key] = cells

        current = self._current_order(appended, gone)
        if current != wanted or resort:
            # A sort is also how the header learns of a new label: it re-renders.
            rank = {id(self._cells[k][0]): i for i, k in enumerate(wanted)}
            first = self.RECORD_COLUMNS[0].key
            self.sort(first, key=lambda cell: rank[id(cell)])
        self._order = wanted
        if cursor_key is not None and cursor_key in self._shown:
            row = wanted.index(cursor_key)
            if row != self.cursor_row:
                self.move_cursor(row=row, scroll=False)

    def _current_order(self, appended: bool, gone: set[str]) -> list[str]:
        """The order rows are in after this round's removals and appends."""
        order = [k for k in self._order if k not in gone]
        if appended:
            seen = set(order)
            order += [k for k in self._shown if k not in seen]
        return order

    @staticmethod
    def _text(spec: RecordColumn[Any], cell: Cell) -> CellText:
        text, style = cell
        return CellText(text, style, right=spec.justify == "right")

    # -- rendering -------------------------------------------------------------------

    def cell_content(self, row_index: int, column_index: int) -> object | None:
        # The cell's CellText (a new one whenever the cell changes: see _apply), or the
        # header's label (changed only with the sort); past the rows, DataTable's own.
        if row_index >= len(self._order):
            return None
        if row_index == -1:
            column = self.columns.get(self.RECORD_COLUMNS[column_index].key)  # type: ignore[call-overload]
            return column.label if column is not None else None
        return self._cells[self._order[row_index]][column_index]

    # -- sorting and filtering -------------------------------------------------------

    def _sortable(self) -> list[str]:
        return [c.key for c in self.RECORD_COLUMNS if c.sort is not None]

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; if it already is, reverse the direction."""
        if column not in self._sortable():
            return
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.set_reactive(RecordTable.sort_reverse, self._specs[column].descending_first)
            self.sort_column = column

    def action_sort_step(self, step: int) -> None:
        keys = self._sortable()
        if not keys:
            return
        index = keys.index(self.sort_column) if self.sort_column in keys else -step
        column = keys[(index + step) % len(keys)]
        self.set_reactive(RecordTable.sort_reverse, self._specs[column].descending_first)
        self.sort_column = column

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def _sort_changed(self) -> None:
        for spec in self.RECORD_COLUMNS:
            column = self.columns.get(spec.key)  # type: ignore[call-overload]
            if column is not None:
                column.label = self._label(spec)
        self._apply(resort=True)
        self.post_message(self.SortChanged(self))

    def watch_sort_column(self) -> None:
        self._sort_changed()

    def watch_sort_reverse(self) -> None:
        self._sort_changed()

    def watch_filter_text(self) -> None:
        self._apply()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))
