"""The jobs list: one row per job requested on any node, keyed by job id.

This module owns :class:`JobTable` and :data:`JOB_COLUMNS`, what each column shows of
a :class:`~tui.source.JobRow`. ``enter`` on a row posts :class:`~tui.messages.JobSelected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from tui.format import fmt_age, fmt_seconds, short_job_id
from tui.messages import JobSelected
from tui.source import JobRow
from tui.widgets.record_table import Cell, RecordColumn, RecordTable

STATE_STYLE = {
    "created": "dim",
    "bidding": "cyan",
    "running": "yellow",
    "verifying": "magenta",
    "publishing": "blue",
    "completed": "green",
    "error": "bold red",
    "cancelled": "dim",
}


def _state(job: JobRow, now: float) -> Cell:
    paused = " ⏸" if job.step and not job.terminal else ""
    return (f"{job.state}{paused}", STATE_STYLE.get(job.state, ""))


def _plain(text: str) -> Cell:
    return (text, "")


JOB_COLUMNS: tuple[RecordColumn[JobRow], ...] = (
    RecordColumn(
        "job",
        "job",
        8,
        lambda j, now: _plain(short_job_id(j.job_id)),
        sort=lambda j: j.job_id,
        help="the job id's first part (`devstack describe` takes the whole id)",
    ),
    RecordColumn(
        "state",
        "state",
        12,
        _state,
        sort=lambda j: j.state,
        help="its state on its requester; ⏸ a step-mode job (it pauses at gates)",
    ),
    RecordColumn(
        "shards",
        "shards",
        6,
        lambda j, now: _plain(str(j.shards)),
        sort=lambda j: j.shards,
        justify="right",
        help="how many shards its inputs were split into",
        descending_first=True,
    ),
    RecordColumn(
        "concurrency",
        "c",
        2,
        lambda j, now: _plain(str(j.concurrency)),
        sort=lambda j: j.concurrency,
        justify="right",
        help="concurrency: nodes that run each shard",
        descending_first=True,
    ),
    RecordColumn(
        "verifier",
        "verifier",
        13,
        lambda j, now: _plain(j.verifier),
        sort=lambda j: j.verifier,
        help="noop (accept every result) or deterministic (equal results must agree)",
    ),
    RecordColumn(
        "publisher",
        "publisher",
        9,
        lambda j, now: _plain(j.publisher),
        sort=lambda j: j.publisher,
        help="ipfs (blocks served over bitswap) or noop (results stay on the node)",
    ),
    RecordColumn(
        "requester",
        "requester",
        9,
        lambda j, now: _plain(j.requester_name),
        sort=lambda j: j.requester_name,
        help="the node it was submitted to",
    ),
    RecordColumn(
        "image",
        "image",
        12,
        lambda j, now: _plain(j.image if j.engine == "docker" else f"({j.engine})"),
        sort=lambda j: j.image,
        help="its Docker image, or (noop) for the noop engine",
    ),
    RecordColumn(
        "age",
        "age",
        5,
        lambda j, now: _plain(fmt_age(j.age_s(now))),
        sort=lambda j: -j.created_at,
        justify="right",
        help="since it was submitted",
    ),
    RecordColumn(
        "total",
        "total",
        7,
        lambda j, now: _plain(fmt_seconds(j.total_s)),
        sort=lambda j: j.total_s,
        justify="right",
        help="submission to end, once it ended",
        descending_first=True,
    ),
)


class JobTable(RecordTable[JobRow]):
    """Every job known from the requesters, newest first by default."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = JOB_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "age"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open", show=True),
    ]

    def record_key(self, record: JobRow) -> str:
        return record.job_id

    def search_text(self, record: JobRow) -> str:
        return record.search_text

    def tiebreak(self, record: JobRow) -> Any:
        return (-record.created_at, record.job_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(JobSelected(event.row_key.value))
