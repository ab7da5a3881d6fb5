"""The nodes view (home): every node of the devstack, live.

This module owns :class:`NodesScreen`: the summary bar, the :class:`NodeTable` (one
row per node, updated in place each refresh), the ``/`` filter line and the keys
(all but the table from :class:`~tui.screens.live_table.LiveTableScreen`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tui.format import MISSING
from tui.host import host_of
from tui.screens.live_table import LiveTableScreen
from tui.source import ClusterSnapshot, NodeRow
from tui.widgets.node_table import NODE_COLUMNS_WITH_HOST, NodeTable
from tui.widgets.record_table import RecordTable


class NodesScreen(LiveTableScreen):
    """One row per node: status, CPU, memory, peers, jobs, bids, contention, latency."""

    CSS_PATH = Path(__file__).with_name("nodes.tcss")
    TABLE_TITLE = "Nodes"

    HELP_TITLE = "Nodes"
    HELP_INTRO = (
        "One row per node, refreshed in place. Click a header, or < and >, to sort; r"
        " reverses. / filters: every word must occur in the node's name, peer id, role"
        " status or host (e.g. unreachable, bad-actor, host-2). "
        + MISSING
        + " marks a figure that does not exist (yet)."
    )
    HELP_COLUMNS = NODE_COLUMNS_WITH_HOST

    def compose_table(self) -> RecordTable[Any]:
        hosts = any(t.host is not None for t in host_of(self).source.targets)
        return NodeTable(hosts=hosts, id="nodes")

    def records(self, snapshot: ClusterSnapshot) -> Sequence[NodeRow]:
        return snapshot.nodes
