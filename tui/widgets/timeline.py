"""The job view's timeline: one row per event of the job, with its phase latency.

This module owns :class:`TimelineTable` and :data:`TIMELINE_COLUMNS`, what each
column shows of a :class:`~tui.jobview.TimelineRow`. Rows are keyed by the event's
place in the requester's log, so a refresh only appends the new events (a
:class:`~tui.widgets.record_table.RecordTable` updates in place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from tui.format import MISSING, fmt_seconds
from tui.jobview import TimelineRow
from tui.widgets.record_table import Cell, RecordColumn, RecordTable

#: Colours of the phases (the same as the jobs list uses for the job's states).
PHASE_STYLE = {
    "submit": "dim",
    "bids": "cyan",
    "accepted": "cyan",
    "running": "yellow",
    "proposed": "yellow",
    "verdict": "magenta",
    "published": "blue",
    "end": "bold",
}
KIND_STYLE = {
    "bid_rejected": "dim",
    "compute_error": "bold red",
    "results_rejected": "bold red",
    "error": "bold red",
    "rerun": "bold yellow",
    "escalated": "bold yellow",
    "spot_check": "yellow",
    "stepped": "bold",
    "gate": "bold",
    "completed": "bold green",
}


def _plain(text: str) -> Cell:
    return (text, "")


def _offset(row: TimelineRow, now: float) -> Cell:
    return _plain(MISSING if row.offset_s is None else f"+{fmt_seconds(row.offset_s)}")


def _event(row: TimelineRow, now: float) -> Cell:
    style = KIND_STYLE.get(row.kind, PHASE_STYLE.get(row.phase, ""))
    if row.role == "compute":
        return (f"· {row.kind}", "dim")
    return (row.kind, style)


TIMELINE_COLUMNS: tuple[RecordColumn[TimelineRow], ...] = (
    RecordColumn(
        "at",
        "+t",
        7,
        _offset,
        sort=lambda r: r.seq,
        justify="right",
        help="when, since the job was created",
    ),
    RecordColumn(
        "event",
        "event",
        19,  # escalation_accepted, the longest kind
        _event,
        sort=lambda r: r.kind,
        help="what happened; · marks an event of the requester's own compute part",
    ),
    RecordColumn(
        "phase",
        "phase",
        9,
        lambda r, now: (r.phase or MISSING, PHASE_STYLE.get(r.phase, "")),
        sort=lambda r: r.phase,
        help="its phase: submit, bids, accepted, running, proposed, verdict, published, end",
    ),
    RecordColumn(
        "shard",
        "shard",
        5,
        lambda r, now: _plain(MISSING if r.shard is None else str(r.shard)),
        sort=lambda r: r.shard,
        justify="right",
        help=f"the shard it is about ({MISSING} for the whole job)",
    ),
    RecordColumn(
        "node",
        "node",
        8,
        lambda r, now: _plain(r.node_name or MISSING),
        sort=lambda r: r.node_name,
        help="the node whose run it is about, or the requester",
    ),
    RecordColumn(
        "took",
        "took",
        7,
        lambda r, now: _plain(fmt_seconds(r.took_s)),
        sort=lambda r: r.took_s,
        justify="right",
        help=(
            "the phase's latency: since the event that began it (a bid's answer since the"
            " round began; a proposal since its bid was accepted; a verdict since"
            " verification began, gates included; published since accepted; the end since"
            " the job was created)"
        ),
        descending_first=True,
    ),
    RecordColumn(
        "detail",
        "detail",
        44,
        lambda r, now: _plain(r.detail),
        help=(
            "the rest: result CID, run time, exit code, reason, gate; for an escalation or"
            " a spot check, the runs it adds on fresh nodes (and the shard's extra runs of"
            " the deal's most) and why"
        ),
    ),
)


class TimelineTable(RecordTable[TimelineRow]):
    """Every event of one job, in the requester's order by default."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = TIMELINE_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "at"

    def record_key(self, record: TimelineRow) -> str:
        return record.key

    def search_text(self, record: TimelineRow) -> str:
        return record.search_text

    def tiebreak(self, record: TimelineRow) -> Any:
        return record.seq
