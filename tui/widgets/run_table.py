"""The job view's runs: one row per (shard, node) with the latency of each phase.

This module owns :class:`RunTable` and :data:`RUN_COLUMNS`, what each column shows
of a :class:`~tui.jobview.RunPhases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from tui.format import MISSING, fmt_seconds
from tui.jobview import RunPhases, short_cid
from tui.widgets.record_table import Cell, RecordColumn, RecordTable

RUN_STATE_STYLE = {
    "bid": "dim",
    "accepted": "cyan",
    "rejected": "dim",
    "running": "yellow",
    "proposed": "yellow",
    "results_accepted": "magenta",
    "results_rejected": "bold red",
    "published": "green",
    "error": "bold red",
    "cancelled": "dim",
}
#: The mark of a latency a step-mode gate held (it includes the wait for the key).
GATED = "⏸"


def _plain(text: str) -> Cell:
    return (text, "")


def _seconds(value: float | None) -> Cell:
    return _plain(fmt_seconds(value))


def _gated(run: RunPhases, value: float | None) -> Cell:
    text = fmt_seconds(value)
    return (f"{text}{GATED}", "") if run.gated and value is not None else _plain(text)


def _result(run: RunPhases, now: float) -> Cell:
    if run.reason:
        return (run.reason, "red")
    if not run.result_id:
        return _plain(MISSING)
    exit_code = "" if run.exit_code in (None, 0) else f" exit {run.exit_code}"
    return _plain(f"{short_cid(run.result_id)}{exit_code}")


RUN_COLUMNS: tuple[RecordColumn[RunPhases], ...] = (
    RecordColumn(
        "shard",
        "shard",
        5,
        lambda r, now: _plain(str(r.shard)),
        sort=lambda r: r.shard,
        justify="right",
        help="the shard",
    ),
    RecordColumn(
        "node",
        "node",
        8,
        lambda r, now: _plain(r.node_name),
        sort=lambda r: r.node_name,
        help="the node that bid for it or ran it",
    ),
    RecordColumn(
        "state",
        "state",
        16,
        lambda r, now: (r.state or MISSING, RUN_STATE_STYLE.get(r.state, "")),
        sort=lambda r: r.state,
        help="its execution's state on the requester",
    ),
    RecordColumn(
        "bid",
        "bid",
        6,
        lambda r, now: _seconds(r.bid_s),
        sort=lambda r: r.bid_s,
        justify="right",
        help="the shard's bidding round began → this node's bid answered",
        descending_first=True,
    ),
    RecordColumn(
        "run",
        "run",
        6,
        lambda r, now: _seconds(r.run_s),
        sort=lambda r: r.run_s,
        justify="right",
        help="the container's run, as the node measured it",
        descending_first=True,
    ),
    RecordColumn(
        "proposed",
        "proposed",
        8,
        lambda r, now: _seconds(r.proposed_s),
        sort=lambda r: r.proposed_s,
        justify="right",
        help="its bid accepted → its result proposed (run, fetching inputs, messages)",
        descending_first=True,
    ),
    RecordColumn(
        "verdict",
        "verdict",
        8,
        lambda r, now: _gated(r, r.verdict_s),
        sort=lambda r: r.verdict_s,
        justify="right",
        help="verification began → its verdict (⏸: a step-mode gate held it)",
        descending_first=True,
    ),
    RecordColumn(
        "published",
        "published",
        9,
        lambda r, now: _seconds(r.published_s),
        sort=lambda r: r.published_s,
        justify="right",
        help="its results accepted → it reported them published",
        descending_first=True,
    ),
    RecordColumn(
        "total",
        "total",
        6,
        lambda r, now: _seconds(r.total_s),
        sort=lambda r: r.total_s,
        justify="right",
        help="the job created → the run's last event",
        descending_first=True,
    ),
    RecordColumn(
        "result",
        "result",
        24,
        _result,
        help="the result CID it proposed (or why it failed)",
    ),
)


class RunTable(RecordTable[RunPhases]):
    """Every (shard, node) of one job, by shard."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = RUN_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "shard"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rank: dict[str, int] = {}

    def show(self, records: Sequence[RunPhases], now: float) -> None:
        # Ties within a shard keep the order the runs appeared in.
        self._rank = {r.key: i for i, r in enumerate(records)}
        super().show(records, now)

    def record_key(self, record: RunPhases) -> str:
        return record.key

    def search_text(self, record: RunPhases) -> str:
        return f"shard {record.shard} {record.node_name} {record.node} {record.state}".lower()

    def tiebreak(self, record: RunPhases) -> Any:
        return (record.shard, self._rank.get(record.key, 0))
