"""The stalls table: one row per task name that stalled the event loop, merged over nodes.

This module owns :class:`StallTable` and :data:`STALL_COLUMNS`, what each column shows
of a :class:`~tui.contention.TaskRow`. It sorts by stall time, most first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from tui.contention import TaskRow
from tui.format import fmt_ms, fmt_rate
from tui.widgets.record_table import Cell, RecordColumn, RecordTable


def _ms(ms: float) -> Cell:
    return (fmt_ms(ms), "" if ms > 0 else "dim")


STALL_COLUMNS: tuple[RecordColumn[TaskRow], ...] = (
    RecordColumn(
        "task",
        "task",
        20,
        lambda t, now: (t.short, ""),
        sort=lambda t: t.short,
        help="the trio task's name (its class and function)",
    ),
    RecordColumn(
        "nodes",
        "nodes",
        5,
        lambda t, now: (str(t.nodes), ""),
        sort=lambda t: t.nodes,
        justify="right",
        help="nodes where it stalled",
        descending_first=True,
    ),
    RecordColumn(
        "stalls",
        "stalls",
        6,
        lambda t, now: (f"{t.stalls:,}", ""),
        sort=lambda t: t.stalls,
        justify="right",
        help="its steps over the stall threshold, since the nodes started",
        descending_first=True,
    ),
    RecordColumn(
        "rate",
        "/s",
        4,
        lambda t, now: (fmt_rate(t.stalls_per_s), "yellow" if t.stalls_per_s else ""),
        sort=lambda t: t.stalls_per_s,
        justify="right",
        help="its stalls per second over the last refresh",
        descending_first=True,
    ),
    RecordColumn(
        "total",
        "total",
        6,
        lambda t, now: _ms(t.total_ms),
        sort=lambda t: t.total_ms,
        justify="right",
        help="the time of its stalled steps, summed",
        descending_first=True,
    ),
    RecordColumn(
        "cpu",
        "cpu",
        6,
        lambda t, now: _ms(t.cpu_ms),
        sort=lambda t: t.cpu_ms,
        justify="right",
        help="... of which the loop's thread was on the CPU (the rest: the OS ran others)",
        descending_first=True,
    ),
    RecordColumn(
        "max",
        "max",
        6,
        lambda t, now: _ms(t.max_ms),
        sort=lambda t: t.max_ms,
        justify="right",
        help="its longest stalled step",
        descending_first=True,
    ),
)


class StallTable(RecordTable[TaskRow]):
    """Tasks that stalled the loop, most stall time first."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = STALL_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "total"
    DEFAULT_REVERSE: ClassVar[bool] = True

    def record_key(self, record: TaskRow) -> str:
        return record.name

    def search_text(self, record: TaskRow) -> str:
        return record.search_text
