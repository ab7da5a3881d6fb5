"""The call sites of one lock: where tasks waited for it, where it was held meanwhile.

This module owns :class:`LockSites`, the panel beside a locks table that shows the
lock under the table's cursor (set :attr:`LockSites.row`), and :func:`sites_text`,
what it renders: the lock's creation site, the nodes that waited (in the locks view)
and every waiter and holder call site the node(s) reported, with their counts.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.contention import LockRow, short_site
from tui.format import fmt_ms


def _sites(sites: tuple[tuple[str, int], ...]) -> RenderableType:
    if not sites:
        return Text("  none", style="dim")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", style="cyan", no_wrap=True)
    grid.add_column(overflow="fold")  # a long site wraps in its column, under itself
    for site, count in sites:
        grid.add_row(f"{count:,}", short_site(site))
    return grid


def sites_text(row: LockRow | None, *, cluster: bool) -> RenderableType:
    """What the panel shows for ``row``; ``cluster``: also which nodes waited."""
    if row is None:
        return Text("no lock under the cursor", style="dim")
    head = Text()
    head.append(row.name, style="bold")
    head.append(f"\ncreated at {short_site(row.created_at)}", style="dim")
    if cluster:
        if row.where:
            waited = ", ".join(f"{node} {fmt_ms(ms)}" for node, ms in row.where)
            head.append(f"\nwaited on {len(row.where)} of {row.nodes} nodes: ", style="bold")
            head.append(waited)
        else:
            head.append(f"\nnever waited for on its {row.nodes} node(s)", style="dim")
    return Group(
        head,
        Text("waiters (where tasks waited):", style="bold"),
        _sites(row.waiters),
        Text("holders (where it was held meanwhile):", style="bold"),
        _sites(row.holders),
    )


class LockSites(Static):
    """The call sites of :attr:`row` (a lock), or a hint when there is none."""

    row: reactive[LockRow | None] = reactive(None, init=False)

    def __init__(self, *, cluster: bool, id: str | None = None) -> None:
        super().__init__(sites_text(None, cluster=cluster), id=id)
        self.cluster = cluster

    def watch_row(self, row: LockRow | None) -> None:
        self.update(sites_text(row, cluster=self.cluster))
