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
from tui.screens.live_table import LiveTableScreen
from tui.source import ClusterSnapshot, NodeRow
from tui.widgets.node_table import NODE_COLUMNS, NodeTable
from tui.widgets.record_table import RecordTable


class NodesScreen(LiveTableScreen):
    """One row per node: status, CPU, memory, peers, jobs, bids, contention, latency."""

    CSS_PATH = Path(__file__).with_name("nodes.tcss")
    TABLE_TITLE = "Nodes"

    HELP_TITLE = "Nodes"
    HELP_INTRO = (
        "One row per node, refreshed in place. Click a header, or < and >, to sort; r"
        " reverses. / filters: every word must occur in the node's name, peer id, role"
        " or status (e.g. unreachable, bad-actor). "
        + MISSING
        + " marks a figure that does not exist (yet)."
    )
    HELP_COLUMNS = NODE_COLUMNS

    def compose_table(self) -> RecordTable[Any]:
        return NodeTable(id="nodes")

    def records(self, snapshot: ClusterSnapshot) -> Sequence[NodeRow]:
        return snapshot.nodes
