"""The credibility table: the nodes a requester counted in its verdicts, worst first.

This module owns :class:`CredibilityTable` and :data:`CREDIBILITY_COLUMNS`, what each
column shows of a :class:`~tui.credibility.NodeCredibility`. It sorts by the
proposals caught, most first; ties put the excluded nodes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from tui.credibility import NodeCredibility
from tui.format import MISSING, fmt_age
from tui.widgets.record_table import Cell, RecordColumn, RecordTable


def _count(n: int, style: str = "") -> Cell:
    return (f"{n:,}", style if n else "dim")


def _excluded(row: NodeCredibility, now: float) -> Cell:
    if row.excluded_until is None:
        return (MISSING, "dim")
    return (f"for {fmt_age(row.excluded_until - now)}", "bold red")


CREDIBILITY_COLUMNS: tuple[RecordColumn[NodeCredibility], ...] = (
    RecordColumn(
        "node",
        "node",
        10,
        lambda r, now: (r.name, "bold red" if r.excluded else ""),
        sort=lambda r: r.name,
        help="a node whose proposals this requester counted in its verdicts",
    ),
    RecordColumn(
        "agreed",
        "agreed",
        6,
        lambda r, now: _count(r.agreed),
        sort=lambda r: r.agreed,
        justify="right",
        help="its proposals equal to the result the verdict accepted",
        descending_first=True,
    ),
    RecordColumn(
        "caught",
        "caught",
        6,
        lambda r, now: _count(r.caught, "bold red"),
        sort=lambda r: r.caught,
        justify="right",
        help="its proposals that differed from the accepted result",
        descending_first=True,
    ),
    RecordColumn(
        "excluded",
        "excluded",
        8,
        _excluded,
        sort=lambda r: r.excluded_until,
        justify="right",
        help="how long this requester still offers it no work, for it was caught lately",
        descending_first=True,
    ),
    RecordColumn(
        "peer",
        "peer id",
        52,
        lambda r, now: (r.peer_id, "dim"),
        sort=lambda r: r.peer_id,
        help="its peer id",
    ),
)


class CredibilityTable(RecordTable[NodeCredibility]):
    """The nodes a requester counted, most caught first."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = CREDIBILITY_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "caught"
    DEFAULT_REVERSE: ClassVar[bool] = True

    def record_key(self, record: NodeCredibility) -> str:
        return record.peer_id

    def search_text(self, record: NodeCredibility) -> str:
        return record.search_text

    def tiebreak(self, record: NodeCredibility) -> Any:
        return (not record.excluded, record.agreed, record.name)
