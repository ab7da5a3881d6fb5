"""The nodes table: one row per node of the devstack, keyed by peer id.

This module owns :class:`NodeTable` and :data:`NODE_COLUMNS`, what each column shows
of a :class:`~tui.source.NodeRow` and how it sorts. ``enter`` on a row posts
:class:`~tui.messages.NodeSelected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual.widgets import DataTable

from tui.format import (
    MISSING,
    fmt_bytes,
    fmt_int,
    fmt_ms,
    fmt_percent,
    fmt_rate,
    short_id,
    sparkline,
)
from tui.messages import NodeSelected
from tui.source import NodeRow, NodeStatus
from tui.widgets.record_table import Cell, RecordColumn, RecordTable

SPARK_WIDTH = 6

_STATUS_STYLE = {
    NodeStatus.UP: "green",
    NodeStatus.UNREACHABLE: "yellow",
    NodeStatus.DOWN: "bold red",
}


def _plain(text: str) -> Cell:
    return (text, "")


def _recent(values: Sequence[float | None]) -> float | None:
    """The mean of the known values a sparkline shows (what its column sorts by)."""
    known = [v for v in values[-SPARK_WIDTH:] if v is not None]
    return sum(known) / len(known) if known else None


def _cpu_trend(row: NodeRow) -> str:
    known = [v for v in row.cpu_history if v is not None]
    top = max([100.0, *known])  # absolute: one core is full height, unless a node exceeds it
    return sparkline(row.cpu_history, SPARK_WIDTH, lo=0.0, hi=top)


def _role(row: NodeRow, now: float) -> Cell:
    text = row.role or MISSING
    if row.bad_actor:
        return (f"{text}!", "bold magenta")
    return _plain(text)


def _worst(row: NodeRow, now: float) -> Cell:
    if row.worst_wait_ms is None:
        return _plain(MISSING)
    if row.worst_wait_ms == 0:
        return _plain("0")
    over = row.lock_warn_ms is not None and row.worst_wait_ms > row.lock_warn_ms
    return (fmt_ms(row.worst_wait_ms), "bold red" if over else "")


def _rate_cell(value: float | None) -> Cell:
    return (fmt_rate(value), "yellow" if value else "")


def _latency_trend(row: NodeRow) -> str:
    # its own lowest to highest: the shape of the trend (a steady p50 is a flat line)
    return sparkline(row.latency_history, SPARK_WIDTH, lo=None, hi=None)


NODE_COLUMNS: tuple[RecordColumn[NodeRow], ...] = (
    RecordColumn(
        "node",
        "node",
        12,
        lambda r, now: (
            f"{r.name:<7} {short_id(r.peer_id, 4)}",
            "" if r.status is NodeStatus.UP else "dim",
        ),
        sort=lambda r: r.index,
        help="its devstack name (`devstack logs 3` takes the index) and the tail of its peer id",
    ),
    RecordColumn(
        "role",
        "role",
        4,
        _role,
        sort=lambda r: r.role,
        help="R: requested jobs since it started; C: has slots to run jobs; ! a bad actor",
    ),
    RecordColumn(
        "status",
        "status",
        11,
        lambda r, now: (r.status.value, _STATUS_STYLE[r.status]),
        sort=lambda r: r.status.value,
        help="up; unreachable: running, no answer in time; down: its process exited",
    ),
    RecordColumn(
        "cpu",
        "cpu%",
        5,
        lambda r, now: _plain(fmt_percent(r.cpu_percent)),
        sort=lambda r: r.cpu_percent,
        justify="right",
        help="CPU of the node process, % of one core (sampled by the node each second)",
        descending_first=True,
    ),
    RecordColumn(
        "cpu_trend",
        "cpu~",
        SPARK_WIDTH,
        lambda r, now: (_cpu_trend(r), "cyan"),
        sort=lambda r: _recent(r.cpu_history),
        help=f"its last {SPARK_WIDTH} CPU samples, full height = one core",
        descending_first=True,
    ),
    RecordColumn(
        "rss",
        "rss",
        5,
        lambda r, now: _plain(fmt_bytes(r.rss_bytes)),
        sort=lambda r: r.rss_bytes,
        justify="right",
        help="resident memory of the node process",
        descending_first=True,
    ),
    RecordColumn(
        "peers",
        "peers",
        5,
        lambda r, now: _plain(fmt_int(r.peers)),
        sort=lambda r: r.peers,
        justify="right",
        help="its gossip topic peers",
        descending_first=True,
    ),
    RecordColumn(
        "running",
        "run",
        3,
        lambda r, now: _plain(fmt_int(r.running)),
        sort=lambda r: r.running,
        justify="right",
        help="shards running on it now",
        descending_first=True,
    ),
    RecordColumn(
        "bids",
        "bids",
        4,
        lambda r, now: _plain(fmt_int(r.bids_sent)),
        sort=lambda r: r.bids_sent,
        justify="right",
        help="bids it sent since it started",
        descending_first=True,
    ),
    RecordColumn(
        "waits",
        "wait/s",
        6,
        lambda r, now: _rate_cell(r.lock_waits_per_s),
        sort=lambda r: r.lock_waits_per_s,
        justify="right",
        help="waits on its instrumented locks longer than its --lock-warn-ms, per second,"
        " last interval",
        descending_first=True,
    ),
    RecordColumn(
        "worst",
        "worst",
        5,
        _worst,
        sort=lambda r: r.worst_wait_ms,
        justify="right",
        help="its longest single lock wait since it started; red over --lock-warn-ms",
        descending_first=True,
    ),
    RecordColumn(
        "stalls",
        "stall/s",
        7,
        lambda r, now: _rate_cell(r.stalls_per_s),
        sort=lambda r: r.stalls_per_s,
        justify="right",
        help="event-loop steps over --stall-ms per second, last interval",
        descending_first=True,
    ),
    RecordColumn(
        "p50",
        "p50",
        5,
        lambda r, now: _plain(fmt_ms(r.latency_p50_ms)),
        sort=lambda r: r.latency_p50_ms,
        justify="right",
        help="submit-to-end latency of the jobs it requested (last 5 min), median",
        descending_first=True,
    ),
    RecordColumn(
        "p95",
        "p95",
        5,
        lambda r, now: _plain(fmt_ms(r.latency_p95_ms)),
        sort=lambda r: r.latency_p95_ms,
        justify="right",
        help="... 95th percentile",
        descending_first=True,
    ),
    RecordColumn(
        "latency_trend",
        "p50~",
        SPARK_WIDTH,
        lambda r, now: (_latency_trend(r), "cyan"),
        sort=lambda r: _recent(r.latency_history),
        help=f"its p50 over the last {SPARK_WIDTH} refreshes, from its lowest to its highest",
        descending_first=True,
    ),
)


HOST_COLUMN: RecordColumn[NodeRow] = RecordColumn(
    "host",
    "host",
    6,
    lambda r, now: _plain(MISSING if r.host is None else f"host-{r.host}"),
    sort=lambda r: r.host,
    help="the simulated host it runs on (`devstack up --hosts`; `devstack partition` cuts"
    " one off); shown when the devstack has hosts",
)

#: The columns of a devstack on simulated hosts: the host beside the node.
NODE_COLUMNS_WITH_HOST: tuple[RecordColumn[NodeRow], ...] = (
    NODE_COLUMNS[0],
    HOST_COLUMN,
    *NODE_COLUMNS[1:],
)


class NodeTable(RecordTable[NodeRow]):
    """Every node of the cluster, one row each, updated in place; with ``hosts``, a
    host column beside the node's name."""

    RECORD_COLUMNS: ClassVar[Sequence[RecordColumn[Any]]] = NODE_COLUMNS
    DEFAULT_SORT: ClassVar[str] = "node"

    def __init__(
        self,
        *,
        hosts: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        if hosts:  # before RecordTable reads them
            self.RECORD_COLUMNS = NODE_COLUMNS_WITH_HOST
        super().__init__(name=name, id=id, classes=classes)
        self.fixed_columns = 1

    def record_key(self, record: NodeRow) -> str:
        return record.peer_id

    def search_text(self, record: NodeRow) -> str:
        return record.search_text

    def tiebreak(self, record: NodeRow) -> Any:
        return record.index

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(NodeSelected(event.row_key.value))
