"""The node view: one node's figures over time, locks, stalls, log tail and profiles.

This module owns :class:`NodeScreen`, which the app pushes when a node is picked in
the nodes view (``NodeScreen(peer_id)``; ``esc`` goes back), and
:func:`node_trends` / :func:`save_and_parse`, its pure parts.

What it shows, and where it comes from:

- the node's header and its figures over time (CPU, RSS, p50 latency, lock waits/s,
  stalls/s) from the app's snapshots (:attr:`~tui.host.TuiHost.snapshot`): CPU
  and latency histories are the poller's, the others are kept here while the view
  is open;
- its locks (with the call sites of the one under the cursor) and its loop stalls
  from ``GET /api/v1/debug/locks``, asked every refresh while the view is shown;
- the tail of its log file from ``GET /api/v1/logs`` (the node reads its own file),
  followed with each refresh (:class:`~tui.log_tail.LogCursor`);
- its record, as a requester, of the nodes that ran its jobs (the credibility tab)
  from ``GET /api/v1/node``, asked every refresh while the view is shown: how many it
  knows, trusts and excludes, the proposals that agreed and were caught, its
  escalations, spot checks and extra runs, and the nodes, most caught first
  (:mod:`tui.credibility`);
- ``p``: asks how many seconds (:class:`~tui.screens.profile_prompt.ProfilePrompt`),
  runs ``POST /api/v1/debug/profile`` with a progress bar, saves the HTML, text and
  speedscope files under ``STATE_DIR/profiles/`` as ``devstack profile`` does
  (:func:`profiles.saved.save_profile`) and shows the call tree and top frames.
  The profile is the app's worker: leaving the view does not lose it (a toast says
  where it was saved).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, RichLog, Static, TabbedContent, TabPane

from devstack.client import calls
from devstack.client.aio import AsyncNodeClient, ssl_context
from devstack.client.calls import NodeApiError
from profiles.saved import profile_base, save_profile
from tui.contention import (
    ContentionRound,
    ContentionTracker,
    parse_call_tree,
    stall_lines,
    task_lines,
    valid_reports,
)
from tui.credibility import DECODER as CREDIBILITY
from tui.credibility import CredibilityView, credibility_view, summary_text, tab_label
from tui.format import fmt_bytes, fmt_int, fmt_ms, fmt_percent, fmt_rate
from tui.host import TuiHost, host_of
from tui.log_tail import LogCursor, LogRead, format_log_line
from tui.screens.profile_prompt import DEFAULT_SECONDS, ProfilePrompt
from tui.source import DEFAULT_HISTORY, ClusterSnapshot, NodeRow, NodeStatus, NodeTarget
from tui.waiting import wait_for_wake
from tui.widgets.credibility_table import CREDIBILITY_COLUMNS, CredibilityTable
from tui.widgets.key_bar import KeyBar
from tui.widgets.lock_sites import LockSites
from tui.widgets.lock_table import NODE_LOCK_COLUMNS, NodeLockTable
from tui.widgets.profile_panel import ProfilePanel, ProfileResult
from tui.widgets.trends import Trend, TrendLines

LOG_LINES = 200
POLL_TIMEOUT_S = 5.0
#: The tabs of the bottom pane, in the order ``t`` goes through them.
TABS = ("node-log-tab", "node-profile-tab", "node-cred-tab")
Connect = Callable[..., AsyncNodeClient]
"""How the view reaches a node: ``connect(api_url, timeout=...)`` (tests pass a fake)."""


def _peak(values: deque[float | None] | tuple[float | None, ...]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def node_trends(
    row: NodeRow,
    rss: tuple[float | None, ...],
    waits: tuple[float | None, ...],
    stalls: tuple[float | None, ...],
) -> tuple[Trend, ...]:
    """The figures panel of ``row``: the poller's CPU and latency histories and the
    view's own ``rss``, lock ``waits``/s and ``stalls``/s histories."""
    cpu_peak = _peak(row.cpu_history)
    lat_peak = _peak(row.latency_history)
    rss_peak, waits_peak, stalls_peak = _peak(rss), _peak(waits), _peak(stalls)
    return (
        Trend(
            "cpu %",
            fmt_percent(row.cpu_percent),
            row.cpu_history,
            fmt_percent(cpu_peak) if cpu_peak is not None else "",
            lo=0.0,
            hi=max(100.0, cpu_peak or 0.0),  # one core is full height, unless it used more
        ),
        Trend(
            "rss",
            fmt_bytes(row.rss_bytes),
            rss,
            fmt_bytes(rss_peak) if rss_peak is not None else "",
            lo=None,  # its own lowest to highest: the shape matters, not the level
            style="magenta",
        ),
        Trend(
            "p50",
            fmt_ms(row.latency_p50_ms),
            row.latency_history,
            fmt_ms(lat_peak) if lat_peak is not None else "",
            lo=None,
            style="green",
        ),
        Trend(
            "waits/s",
            fmt_rate(row.lock_waits_per_s),
            waits,
            fmt_rate(waits_peak) if waits_peak is not None else "",
            style="yellow",
        ),
        Trend(
            "stalls/s",
            fmt_rate(row.stalls_per_s),
            stalls,
            fmt_rate(stalls_peak) if stalls_peak is not None else "",
            style="red",
        ),
    )


def header_text(peer_id: str, row: NodeRow | None, target: NodeTarget | None) -> Text:
    """The line at the top: name, peer id, status, role, API address and gossip peers."""
    text = Text()
    name = row.name if row else target.name if target else peer_id[-6:]
    text.append(f" {name} ", style="bold reverse")
    text.append(f" {peer_id}")
    if row is None:
        text.append("  not in the devstack's cluster.json (any more)", style="yellow")
        return text
    status_style = {NodeStatus.UP: "green", NodeStatus.UNREACHABLE: "yellow"}
    text.append(f"  {row.status.value}", style=status_style.get(row.status, "bold red"))
    if row.error:
        text.append(f" ({row.error})", style="dim")
    if row.role:
        text.append(f"  {row.role}{'!' if row.bad_actor else ''}", style="bold")
    text.append(f"  {row.api.removeprefix('http://')}", style="dim")
    if row.peers is not None:
        text.append(f"  peers {row.peers}")
    return text


def jobs_text(row: NodeRow | None) -> str:
    """The node's job counters, under its figures."""
    if row is None or row.status is not NodeStatus.UP:
        return ""
    return (
        f"requested {fmt_int(row.open_jobs)} open, {fmt_int(row.completed)} done,"
        f" {fmt_int(row.failed)} error · running {fmt_int(row.running)}"
        f" · bids {fmt_int(row.bids_sent)}"
    )


def save_and_parse(
    node: str, seconds: int, answer: dict[str, Any], out_dir: Path | None
) -> ProfileResult:
    """A profile answer's call tree, and its files saved under ``out_dir`` as
    ``NODE-TIMESTAMP.html|.txt|.speedscope.json`` (blocking: run it in a thread).

    Raises KeyError/TypeError/ValueError for an answer without the profile's shape.
    """
    roots = tuple(parse_call_tree(answer["text"]))
    top = tuple(answer["top"])
    samples = int(answer["samples"])
    if out_dir is None:
        return ProfileResult(node, seconds, samples, top, roots, (), "no devstack state dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        saved = save_profile(node, answer, profile_base(out_dir, node))
    except OSError as exc:
        return ProfileResult(node, seconds, samples, top, roots, (), str(exc))
    return ProfileResult(node, seconds, samples, top, roots, saved.paths)


class NodeScreen(Screen[None]):
    """One node: figures over time, locks and their call sites, stalls, log, profile,
    credibility."""

    CSS_PATH = Path(__file__).with_name("node.tcss")
    AUTO_FOCUS = "NodeLockTable"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "profile", "Profile"),
        Binding("t", "toggle_tab", "Next tab", tooltip="Log, profile, credibility"),
        Binding("m", "zoom", "Maximize"),
        # Before the app's esc (back): a maximized pane is restored first.
        Binding("escape", "back", "Back", show=False),
    ]

    HELP_TITLE = "Node"
    HELP_INTRO = (
        "One node. Figures: CPU and p50 latency as the nodes view polls them, RSS, lock"
        " waits/s and stalls/s since this view opened. Locks: its instrumented locks"
        " (GET /api/v1/debug/locks, every refresh), most total wait first; the call sites"
        " of the lock under the cursor are beside them. Stalls: event-loop steps over"
        " --stall-ms and the worst one's stack. Log: the tail of its log file, followed."
        " p profiles it (pyinstrument) for the seconds asked and shows the call tree, the"
        " functions with the most self time and the saved HTML and speedscope files."
        " Credibility (GET /api/v1/node, every refresh): as a requester, the nodes it"
        " knows, trusts and excludes (caught forging lately: offered no work for now),"
        " their proposals that agreed with the accepted result and were caught"
        " differing, the escalations, spot checks and extra runs it asked for, and the"
        " nodes, most caught first. t goes through the log, the profile and the"
        " credibility; m maximizes the focused pane (tab moves the focus); esc restores"
        " it, or goes back."
    )
    HELP_COLUMNS = (*NODE_LOCK_COLUMNS, *CREDIBILITY_COLUMNS)

    row: var[NodeRow | None] = var(None, init=False, always_update=True)
    """The node as of the app's last snapshot."""
    contention: var[ContentionRound | None] = var(None, init=False, always_update=True)
    """The node's locks and stalls as of its last answer."""
    locks_error: var[str] = var("", init=False)
    """Why the last ``/api/v1/debug/locks`` failed ("" if it did not)."""
    credibility: var[CredibilityView | None] = var(None, init=False)
    """The node's record of the others, as of its last ``/api/v1/node`` answer."""
    credibility_error: var[str] = var("", init=False)
    """Why the last ``/api/v1/node`` failed ("" if it did not)."""

    def __init__(
        self,
        peer_id: str,
        *,
        connect: Connect = AsyncNodeClient,
        clock: Callable[[], float] = time.time,
        log_lines: int = LOG_LINES,
    ) -> None:
        super().__init__()
        self.peer_id = peer_id
        self._connect = connect
        self._clock = clock
        self._log_lines = log_lines
        self._tracker = ContentionTracker()
        self._rss: deque[float | None] = deque(maxlen=DEFAULT_HISTORY)
        self._waits: deque[float | None] = deque(maxlen=DEFAULT_HISTORY)
        self._stalls: deque[float | None] = deque(maxlen=DEFAULT_HISTORY)
        self._last_snapshot: ClusterSnapshot | None = None
        self._log = LogCursor()
        self._log_note = ""
        self.log_file: Path | None = None
        """The node's log file, as the node names it (None before it answered)."""
        self.log_shown: deque[str] = deque(maxlen=log_lines)
        """The raw log lines on screen, oldest first."""
        self.profile_seconds = DEFAULT_SECONDS
        self.profiling = False
        self._wake = asyncio.Event()

    # -- layout ----------------------------------------------------------------------

    @property
    def bacalhau(self) -> TuiHost:
        return host_of(self)

    @property
    def node_name(self) -> str:
        if self.row is not None:
            return self.row.name
        target = self._target()
        return target.name if target else self.peer_id[-6:]

    def compose(self) -> ComposeResult:
        yield Static(header_text(self.peer_id, None, self._target()), id="node-header")
        with Horizontal(id="node-top"):
            yield TrendLines(id="node-figures")
            with VerticalScroll(id="node-stalls"):
                yield Static("asking the node …", id="node-stalls-text")
        with Horizontal(id="node-middle"):
            yield NodeLockTable(id="node-locks")
            with VerticalScroll(id="node-sites"):
                yield LockSites(cluster=False, id="node-sites-text")
        with TabbedContent(id="node-tabs", initial="node-log-tab"):
            with TabPane("Log", id="node-log-tab"):
                yield RichLog(max_lines=self._log_lines, id="node-log")
            with TabPane("Profile", id="node-profile-tab"):
                yield ProfilePanel(id="node-profile")
            with TabPane(tab_label(None), id="node-cred-tab"):
                yield Static("asking the node …", id="node-cred-summary")
                yield CredibilityTable(id="node-cred")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#node-figures").border_title = "Figures"
        self.query_one("#node-stalls").border_title = "Stalls"
        self.query_one("#node-sites").border_title = "Call sites"
        self._retitle_locks()
        self._retitle_credibility()
        self.watch(self.app, "snapshot", self._on_snapshot, init=True)

    def on_screen_resume(self) -> None:
        self._poll()

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "node-poll")

    # -- the app's snapshots: header and figures ------------------------------------

    def _target(self) -> NodeTarget | None:
        source = getattr(self.app, "source", None)
        targets = source.targets if source is not None else ()
        return next((t for t in targets if t.peer_id == self.peer_id), None)

    def _on_snapshot(self, snapshot: ClusterSnapshot | None) -> None:
        if snapshot is None or snapshot is self._last_snapshot:
            return
        self._last_snapshot = snapshot
        self._wake.set()  # the app polled (on time, or "refresh now"): so does this view
        row = snapshot.node(self.peer_id)
        if row is not None:
            self._rss.append(row.rss_bytes)
            self._waits.append(row.lock_waits_per_s)
            self._stalls.append(row.stalls_per_s)
        self.row = row

    def watch_row(self, row: NodeRow | None) -> None:
        self.query_one("#node-header", Static).update(
            header_text(self.peer_id, row, self._target())
        )
        figures = self.query_one(TrendLines)
        figures.border_subtitle = jobs_text(row)
        if row is not None:
            figures.trends = node_trends(
                row, tuple(self._rss), tuple(self._waits), tuple(self._stalls)
            )

    # -- locks, stalls and the log, while shown ---------------------------------------

    def _api_url(self) -> str | None:
        if self.row is not None:
            return self.row.api
        target = self._target()
        return target.api if target else None

    @work(exclusive=True, group="node-poll", name="poll the node's locks and log")
    async def _poll(self) -> None:
        await asyncio.to_thread(ssl_context)  # made once, off the event loop
        api: AsyncNodeClient | None = None
        try:
            while True:
                if not self.is_current:  # left before this worker ran
                    return
                started = time.monotonic()
                url = self._api_url()
                if api is None and url is not None:
                    api = self._connect(url, timeout=POLL_TIMEOUT_S)
                if api is not None:
                    await asyncio.gather(self._poll_locks(api), self._poll_credibility(api))
                await self._poll_log(api)
                # Next round with the app's next one, or after its refresh interval.
                delay = self.bacalhau.refresh_interval - (time.monotonic() - started)
                await wait_for_wake(self._wake, max(0.05, delay))
        finally:
            if api is not None:
                await api.aclose()

    async def _poll_locks(self, api: AsyncNodeClient) -> None:
        try:
            document = await api.locks()
        except NodeApiError as exc:
            self.locks_error = exc.message
            return
        good, _bad = valid_reports([(self.node_name, document)])
        if not good:
            self.locks_error = "the node's /api/v1/debug/locks answer has an unexpected shape"
            return
        self.locks_error = ""
        self.contention = self._tracker.update(good, self._clock())

    async def _poll_credibility(self, api: AsyncNodeClient) -> None:
        try:
            document = await api.fetch(calls.info(), CREDIBILITY)
        except NodeApiError as exc:
            self.credibility_error = exc.message
            return
        self.credibility_error = ""
        self.credibility = credibility_view(document, self._names())

    def _names(self) -> dict[str, str]:
        source = getattr(self.app, "source", None)
        return {t.peer_id: t.name for t in (source.targets if source is not None else ())}

    def _credibility_table(self) -> CredibilityTable | None:
        """The credibility table; None once the screen is being taken down."""
        return next(iter(self.query(CredibilityTable)), None)

    def watch_credibility(self, view: CredibilityView | None) -> None:
        table = self._credibility_table()
        if view is None or table is None:
            return
        table.show(view.nodes, self._clock())
        self.query_one("#node-cred-summary", Static).update(summary_text(view))
        self.query_one(TabbedContent).get_tab("node-cred-tab").label = tab_label(view)
        self._retitle_credibility()

    def watch_credibility_error(self) -> None:
        self._retitle_credibility()

    def _retitle_credibility(self) -> None:
        table = self._credibility_table()
        if table is None:
            return
        view = self.credibility
        title = table.title("Nodes")
        if view is not None and view.counted > len(view.nodes):
            count, sep, rest = title.partition(" · ")
            title = f"{count}, the worst of {view.counted}{sep}{rest}"
        table.border_title = title
        if self.credibility_error:
            table.border_subtitle = f"[red]{self.credibility_error}[/red]"
        elif view is not None:
            table.border_subtitle = "as this node counted them in its verdicts"
        else:
            table.border_subtitle = "asking the node …"

    def _lock_table(self) -> NodeLockTable | None:
        """The screen's lock table; None once the screen is being taken down (a poll
        that was under way when it closed may still land)."""
        return next(iter(self.query(NodeLockTable)), None)

    def watch_contention(self, found: ContentionRound | None) -> None:
        table = self._lock_table()
        if found is None or table is None:
            return
        table.show(found.locks, found.at)
        self._show_sites()
        lines = stall_lines(found.stalls, stack_frames=12)
        tasks = task_lines(found.tasks, limit=8)
        if tasks:
            worst = [i for i, line in enumerate(lines) if line.startswith("worst:")]
            at = worst[0] if worst else len(lines)
            lines = [*lines[:at], "tasks that stalled most:", *tasks, *lines[at:]]
        self.query_one("#node-stalls-text", Static).update("\n".join(lines))
        self._retitle_locks()

    def watch_locks_error(self) -> None:
        self._retitle_locks()

    def _retitle_locks(self) -> None:
        table = self._lock_table()
        if table is None:
            return
        found = self.contention
        title = table.title("Locks")
        if found is not None:  # after the count, before the filter and sort
            count, sep, rest = title.partition(" · ")
            title = f"{count} · {len(found.contended)} waited for{sep}{rest}"
        table.border_title = title
        if self.locks_error:
            table.border_subtitle = f"[red]{self.locks_error}[/red]"
        elif found is not None:
            table.border_subtitle = f"warns past {found.found.lock_warn_ms:g} ms"
        else:
            table.border_subtitle = "asking the node …"

    def on_record_table_sort_changed(self) -> None:
        self._retitle_locks()
        self._retitle_credibility()

    def _show_sites(self) -> None:
        table = self._lock_table()
        if table is None:
            return
        key = table.cursor_key
        self.query_one(LockSites).row = table.records.get(key) if key is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, NodeLockTable):
            self._show_sites()

    async def _read_log(self, api: AsyncNodeClient | None) -> LogRead:
        """What the node's log has new since the last answer, or why nothing."""
        if api is None:
            return LogRead((), error="the node is not in the devstack's cluster.json")
        try:
            answer = await api.logs(self._log_lines, self._log.after)
        except NodeApiError as exc:
            return LogRead((), error=exc.message)
        try:
            return self._log.read(answer)
        except (KeyError, TypeError, ValueError):
            return LogRead((), error="the node's /api/v1/logs answer has an unexpected shape")

    async def _poll_log(self, api: AsyncNodeClient | None) -> None:
        found = await self._read_log(api)
        if found.path:
            self.log_file = Path(found.path)
        texts: list[Text] = []
        if found.lines:  # JSON per line: off the event loop, as the tail can be 200 lines
            texts = await asyncio.to_thread(lambda: [format_log_line(x) for x in found.lines])
        log = next(iter(self.query(RichLog)), None)
        if log is None:  # the screen closed while this poll was under way
            return
        if found.restarted:
            log.clear()
            self.log_shown.clear()
        if texts:  # one write: RichLog renders each write on its own, ~5 ms a line here
            log.write(Text("\n").join(texts))
            self.log_shown.extend(found.lines)
        if found.error != self._log_note or log.border_title is None:
            self._log_note = found.error
            name = self.log_file.name if self.log_file else "log"
            log.border_title = f"{name} · last {self._log_lines} lines, followed"
            log.border_subtitle = f"[yellow]{found.error}[/yellow]" if found.error else ""

    def action_zoom(self) -> None:
        """Maximize the focused pane (the call tree, the log, ...), or restore it."""
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None:
            self.maximize(self.focused)

    async def action_back(self) -> None:
        if self.maximized is not None:
            self.minimize()
        else:
            await self.bacalhau.action_back()

    # -- profiles -------------------------------------------------------------------

    def action_toggle_tab(self) -> None:
        """Show the next tab: the log, the profile, the credibility, the log again."""
        tabs = self.query_one(TabbedContent)
        at = TABS.index(tabs.active) if tabs.active in TABS else -1
        tabs.active = TABS[(at + 1) % len(TABS)]

    def action_profile(self) -> None:
        if self.profiling:
            self.notify(f"a profile of {self.node_name} is already running", severity="warning")
            return
        self.app.push_screen(ProfilePrompt(self.node_name, self.profile_seconds), self._profile)

    def _profile(self, seconds: int | None) -> None:
        url = self._api_url()
        if seconds is None:
            return
        if url is None:
            self.notify(f"{self.node_name} is not in the devstack any more", severity="error")
            return
        self.profile_seconds = seconds
        self.profiling = True
        self.query_one(TabbedContent).active = "node-profile-tab"
        self.query_one(ProfilePanel).start(self.node_name, seconds)
        state_dir = getattr(self.bacalhau.source, "state_dir", None)
        out_dir = state_dir / "profiles" if state_dir is not None else None
        # The app's worker, not this screen's: going back to the nodes view while the
        # node samples itself must not throw the profile away.
        self.app.run_worker(
            self._take_profile(self.node_name, url, seconds, out_dir),
            name=f"profile {self.node_name}",
            group=f"profile-{self.peer_id}",
            exit_on_error=False,
        )

    async def _take_profile(self, node: str, url: str, seconds: int, out_dir: Path | None) -> None:
        api = self._connect(url)
        try:
            answer = await api.profile(seconds)
        except NodeApiError as exc:
            self._profile_failed(node, exc.message)
            return
        finally:
            await api.aclose()
        try:
            result = await asyncio.to_thread(save_and_parse, node, seconds, answer, out_dir)
        except (KeyError, TypeError, ValueError) as exc:
            self._profile_failed(node, f"unexpected answer from the node ({exc!r})")
            return
        self.profiling = False
        if result.html is not None:
            self.app.notify(f"{node}: profile saved as {result.html}", title="Profile")
        elif result.save_error:
            self.app.notify(f"{node}: profile not saved: {result.save_error}", severity="error")
        if self.is_attached:
            self.query_one(ProfilePanel).show(result)

    def _profile_failed(self, node: str, message: str) -> None:
        self.profiling = False
        self.app.notify(f"{node}: {message}", title="Profile failed", severity="error")
        if self.is_attached:
            self.query_one(ProfilePanel).failed(message)
