"""The cluster summary bar: nodes up, jobs by state, aggregate CPU and memory.

This module owns :class:`SummaryBar`, one line (two when the terminal is narrow) at
the top of the nodes and jobs views. Set :attr:`SummaryBar.snapshot`; it renders
only what the snapshot holds (:data:`~tui.format.MISSING` for a figure nobody reported).
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.format import MISSING, fmt_bytes_long, fmt_percent
from tui.source import ClusterSnapshot


def _n(value: int | None) -> str:
    return MISSING if value is None else str(value)


def summary_text(snapshot: ClusterSnapshot | None) -> Text:
    """The bar's text for ``snapshot`` (``None``: nothing has answered yet)."""
    text = Text()
    text.append(" py-bacalhau devstack", style="bold")
    if snapshot is None:
        text.append(" · asking the nodes …", style="dim")
        return text
    if not snapshot.cluster_found:
        where = f" in {snapshot.state_dir}" if snapshot.state_dir else ""
        text.append(f" · no devstack is running{where}: start one with `devstack up`")
        return text
    s = snapshot.summary
    text.append(" · ")
    text.append(f"{s.up}/{s.nodes} nodes up", style="green" if s.up == s.nodes else "yellow")
    if s.unreachable:
        text.append(f", {s.unreachable} unreachable", style="yellow")
    if s.down:
        text.append(f", {s.down} down", style="bold red")
    text.append(" · jobs ")
    text.append(f"{_n(s.jobs_open)} open", style="cyan" if s.jobs_open else "")
    text.append(f", {_n(s.jobs_completed)} completed, ")
    text.append(f"{_n(s.jobs_failed)} error", style="red" if s.jobs_failed else "")
    text.append(f" · CPU {fmt_percent(s.cpu_percent)}%")
    text.append(f" · mem {fmt_bytes_long(s.rss_bytes)}")
    if s.running_shards:
        text.append(f" · {s.running_shards} shards running")
    text.append(f" · polled in {snapshot.round_ms:.0f} ms", style="dim")
    return text


class SummaryBar(Widget):
    """The cluster at a glance, from the latest :class:`~tui.source.ClusterSnapshot`.

    One line, two when the text does not fit the width; the screen's layout is
    refreshed only when that changes, not on every snapshot."""

    DEFAULT_CSS = """
    SummaryBar {
        height: 1;
        background: $panel;
        color: $text;
    }
    """

    snapshot: reactive[ClusterSnapshot | None] = reactive(None)

    def render(self) -> Text:
        return summary_text(self.snapshot)

    def _fit(self) -> None:
        width = self.size.width or self.app.size.width
        lines = 1 if summary_text(self.snapshot).cell_len <= width else 2
        if self.styles.height is None or self.styles.height.value != lines:
            self.styles.height = lines

    def watch_snapshot(self) -> None:
        self._fit()

    def on_resize(self) -> None:
        self._fit()
