"""The locks tables: one row per instrumented lock, keyed by name and creation site.

This module owns :class:`LockTable` (the locks view: every node's locks merged, with
the nodes that waited and the worst one), :class:`NodeLockTable` (one node's locks)
and their columns (:data:`LOCK_COLUMNS`, :data:`NODE_LOCK_COLUMNS`), what each shows
of a :class:`~tui.contention.LockRow`. Both sort by total wait, most first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from tui.contention import LockRow
from tui.format import MISSING, fmt_ms, fmt_rate
from tui.widgets.record_table import Cell, RecordColumn, RecordTable


def _plain(text: str) -> Cell:
    return (text, "")


def _count(n: int) -> Cell:
    return (f"{n:,}", "" if n else "dim")


def _wait(ms: float, warn: bool = False) -> Cell:
    if ms <= 0:
        return ("0", "dim")
    return (fmt_ms(ms), "bold red" if warn else "")


def _rate(value: float | None) -> Cell:
    return (fmt_rate(value), "yellow" if value else "")


def _nodes(row: LockRow, now: float) -> Cell:
    return (f"{row.contended_nodes}/{row.nodes}", "" if row.contended_nodes else "dim")


_NAME = RecordColumn[LockRow](
    "lock",
    "lock",
    22,
    lambda r, now: (r.name, "bold" if r.contended else ""),
    sort=lambda r: r.name,
    help="the lock's name (several locks made at one line of code are one row)",
)
_ACQUIRED = RecordColumn[LockRow](
    "acquired",
    "acquired",
    8,
    lambda r, now: _count(r.acquisitions),
    sort=lambda r: r.acquisitions,
    justify="right",
    help="acquisitions since the node(s) started",
    descending_first=True,
)
_CONTENDED = RecordColumn[LockRow](
    "contended",
    "waited",
    7,
    lambda r, now: _count(r.contended),
    sort=lambda r: r.contended,
    justify="right",
    help="acquisitions that had to wait (the lock was held)",
    descending_first=True,
)
_RATE = RecordColumn[LockRow](
    "rate",
    "wait/s",
    6,
    lambda r, now: _rate(r.waits_per_s),
    sort=lambda r: r.waits_per_s,
    justify="right",
    help="waits per second over the last refresh",
    descending_first=True,
)
_TOTAL = RecordColumn[LockRow](
    "wait",
    "wait",
    6,
    lambda r, now: _wait(r.total_wait_ms),
    sort=lambda r: r.total_wait_ms,
    justify="right",
    help="time spent waiting for it, summed over every wait (and node)",
    descending_first=True,
)
_MEAN = RecordColumn[LockRow](
    "mean",
    "mean",
    6,
    lambda r, now: _wait(r.mean_wait_ms),
    sort=lambda r: r.mean_wait_ms,
    justify="right",
    help="mean wait of the acquisitions that waited",
    descending_first=True,
)
_P99 = RecordColumn[LockRow](
    "p99",
    "p99",
    6,
    lambda r, now: _wait(r.p99_wait_ms),
    sort=lambda r: r.p99_wait_ms,
    justify="right",
    help="99th percentile of the recent waits (the worst node's)",
    descending_first=True,
)
_MAX = RecordColumn[LockRow](
    "max",
    "max",
    6,
    lambda r, now: _wait(r.max_wait_ms),
    sort=lambda r: r.max_wait_ms,
    justify="right",
    help="the longest single wait",
    descending_first=True,
)
_HOLD = RecordColumn[LockRow](
    "hold",
    "hold",
    6,
    lambda r, now: _wait(r.max_hold_ms),
    sort=lambda r: r.max_hold_ms,
    justify="right",
    help="the longest it was held at once",
    descending_first=True,
)

LOCK_COLUMNS: tuple[RecordColumn[LockRow], ...] = (
    _NAME,
    RecordColumn(
        "nodes",
        "nodes",
        5,
        _nodes,
        sort=lambda r: r.contended_nodes,
        justify="right",
        help="nodes where it was waited for / nodes that have it",
        descending_first=True,
    ),
    _ACQUIRED,
    _CONTENDED,
    _RATE,
    _TOTAL,
    _MEAN,
    _P99,
    _MAX,
    _HOLD,
    RecordColumn(
        "worst_node",
        "worst on",
        8,
        lambda r, now: _plain(r.worst_node or MISSING),
        sort=lambda r: r.worst_node,
        help="the node of the longest single wait (every node that waited: below)",
    ),
)

# One node's: no node columns, and no p99 (mean and max bound it), so that it fits
# beside the call sites at 120 columns.
NODE_LOCK_COLUMNS: tuple[RecordColumn[LockRow], ...] = (
    _NAME,
    _ACQUIRED,
    _CONTENDED,
    _RATE,
    _TOTAL,
    _MEAN,
    _MAX,
    _HOLD,
)


class LockTable(RecordTable[LockRow]):
    """Locks merged over the nodes, most total wait first."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = LOCK_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "wait"
    DEFAULT_REVERSE: ClassVar[bool] = True

    def record_key(self, record: LockRow) -> str:
        return record.key

    def search_text(self, record: LockRow) -> str:
        return record.search_text

    def tiebreak(self, record: LockRow) -> Any:
        return (-record.acquisitions, record.key)


class NodeLockTable(LockTable):
    """One node's locks."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = NODE_LOCK_COLUMNS
