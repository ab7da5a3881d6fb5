"""The locks view: the cluster's most contended locks and its worst loop stalls, live.

This module owns :class:`LocksScreen` (what ``devstack locks`` prints, refreshed in
place) and :class:`ContentionPoller`, which asks every node for
``GET /api/v1/debug/locks`` at once, at most ``max_concurrency`` requests at a time.
The view polls only while it is shown, with each of the app's polls; each
round is merged by :class:`~tui.contention.ContentionTracker` (``devstack locks``'s
own merge): a lock is one row over every node (counts summed, maxima and p99 the
worst node's), with the nodes that waited for it and the call sites of the one
under the cursor below; stalls are merged per task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import var
from textual.widgets import DataTable, Static

from devstack.client.aio import AsyncNodeClient, ssl_context
from devstack.client.calls import NodeApiError
from tui.contention import ContentionRound, ContentionTracker, Report, stall_lines, valid_reports
from tui.screens.live_table import LiveTableScreen
from tui.source import DEFAULT_MAX_CONCURRENCY, ClusterSnapshot, NodeTarget
from tui.waiting import wait_for_wake
from tui.widgets.filter_input import FilterInput
from tui.widgets.key_bar import KeyBar
from tui.widgets.lock_sites import LockSites
from tui.widgets.lock_table import LOCK_COLUMNS, LockTable
from tui.widgets.record_table import RecordTable
from tui.widgets.stall_table import StallTable
from tui.widgets.summary_bar import SummaryBar

POLL_TIMEOUT_S = 5.0
Connect = Callable[..., AsyncNodeClient]
"""How the view reaches a node: ``connect(api_url, timeout=...)`` (tests pass a fake)."""


@dataclass(frozen=True)
class PollResult:
    """One round: the documents that came back, and why the others did not."""

    reports: tuple[Report, ...]
    errors: dict[str, str]  # node name -> why it did not answer
    asked: int


class ContentionPoller:
    """Asks nodes for their locks and stalls concurrently, bounded by a semaphore;
    one :class:`~devstack.client.aio.AsyncNodeClient` per node, kept between rounds. Close with
    :meth:`aclose`."""

    def __init__(
        self,
        connect: Connect = AsyncNodeClient,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        timeout: float = POLL_TIMEOUT_S,
    ) -> None:
        self._connect = connect
        self._timeout = timeout
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._apis: dict[str, AsyncNodeClient] = {}
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests that were ever out at once

    async def poll(self, targets: Sequence[NodeTarget]) -> PollResult:
        gone = set(self._apis) - {t.api for t in targets}
        for url in gone:  # nodes no longer in the cluster
            await self._apis.pop(url).aclose()

        async def one(target: NodeTarget) -> tuple[str, dict[str, Any] | None, str]:
            api = self._apis.get(target.api)
            if api is None:
                api = self._apis[target.api] = self._connect(target.api, timeout=self._timeout)
            async with self._semaphore:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    return target.name, await api.locks(), ""
                except NodeApiError as exc:
                    return target.name, None, exc.message
                finally:
                    self.in_flight -= 1

        answers = await asyncio.gather(*(one(t) for t in targets))
        reports = tuple((name, doc) for name, doc, _ in answers if doc is not None)
        errors = {name: error for name, doc, error in answers if doc is None}
        return PollResult(reports, errors, len(targets))

    async def aclose(self) -> None:
        apis, self._apis = self._apis, {}
        for api in apis.values():
            await api.aclose()


class LocksScreen(LiveTableScreen):
    """The cluster's contended locks (merged over the nodes) and its loop stalls."""

    CSS_PATH = Path(__file__).with_name("locks.tcss")
    TABLE_TITLE = "Contended locks"
    AUTO_FOCUS = "LockTable"

    HELP_TITLE = "Locks"
    HELP_INTRO = (
        "What `devstack locks` prints, refreshed while this view is shown: every node's"
        " instrumented locks (GET /api/v1/debug/locks), merged. A lock made at the same"
        " line of code is one row over all nodes: counts and total wait summed since each"
        " node started, mean, p99, max wait and max hold the worst node's. Only locks"
        " that were ever waited for are listed. Below: every node that waited for the"
        " lock under the cursor and its waiter and holder call sites; the loop's stalls"
        " (task steps over --stall-ms) merged per task, and the worst one's stack. Sort"
        " and filter as in the nodes view."
    )
    HELP_COLUMNS = LOCK_COLUMNS

    found: var[ContentionRound | None] = var(None, init=False, always_update=True)
    """The last round's merge (None before the first)."""

    def __init__(
        self,
        *,
        connect: Connect = AsyncNodeClient,
        clock: Callable[[], float] = time.time,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        super().__init__()
        self._connect = connect
        self._clock = clock
        self._max_concurrency = max_concurrency
        self._tracker = ContentionTracker()
        self.last_poll: PollResult | None = None
        self.poller: ContentionPoller | None = None
        self._wake = asyncio.Event()

    # -- layout (LiveTableScreen's, with the call sites and stalls below) -------------

    def compose_table(self) -> RecordTable[Any]:
        return LockTable(id="locks")

    @property
    def table(self) -> LockTable:
        return self.query_one("#locks", LockTable)

    def compose(self) -> ComposeResult:
        yield SummaryBar()
        yield self.compose_table()
        with Horizontal(id="locks-bottom"):
            with VerticalScroll(id="locks-sites"):
                yield LockSites(cluster=True, id="locks-sites-text")
            with Vertical(id="locks-stalls"):
                yield Static("asking the nodes …", id="locks-stall-summary")
                yield StallTable(id="locks-tasks")
        yield FilterInput(id="filter")
        yield KeyBar()

    def on_mount(self) -> None:
        # (Textual also calls LiveTableScreen.on_mount.)
        self.query_one("#locks-sites").border_title = "Call sites and nodes"
        self.query_one("#locks-stalls").border_title = "Loop stalls"
        self.watch(self.app, "snapshot", self._wake_up, init=False)

    def _wake_up(self) -> None:
        """The app polled (on time, or "refresh now"): so does this view."""
        self._wake.set()

    def records(self, snapshot: ClusterSnapshot) -> Sequence[Any]:
        return self.found.contended if self.found is not None else ()

    def subtitle(self, snapshot: ClusterSnapshot | None) -> str:
        polled, found = self.last_poll, self.found
        if polled is None or found is None:
            return "asking the nodes …"
        parts = []
        if not found.contended:
            acquired = sum(row.acquisitions for row in found.locks)
            parts.append(f"no contention ({len(found.locks)} locks, {acquired:,} acquisitions)")
        answered = len(polled.reports)
        parts.append(f"{answered}/{polled.asked} nodes answered")
        if polled.errors:
            name, error = next(iter(sorted(polled.errors.items())))
            parts.append(f"[yellow]{name}: {error}[/yellow]")
        parts.append(f"warns past {found.found.lock_warn_ms:g} ms")
        return " · ".join(parts)

    # -- polling, while shown ---------------------------------------------------------

    def on_screen_resume(self) -> None:
        # (Textual calls LiveTableScreen.on_screen_resume after this one.)
        if self.is_current:  # not shown and left again before this event came through
            self._poll()

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "locks-poll")

    @work(exclusive=True, group="locks-poll", name="poll every node's locks")
    async def _poll(self) -> None:
        await asyncio.to_thread(ssl_context)  # made once, off the event loop
        poller = self.poller = ContentionPoller(
            self._connect, max_concurrency=self._max_concurrency
        )
        try:
            while True:
                if not self.is_current:  # left before this worker ran
                    return
                started = time.monotonic()
                polled = await poller.poll(self.bacalhau.source.targets)
                good, bad = valid_reports(polled.reports)
                errors = dict(polled.errors)
                errors.update({node: "unexpected answer" for node in bad})
                self.last_poll = PollResult(tuple(good), errors, polled.asked)
                self.found = self._tracker.update(good, self._clock())
                # Next round with the app's next one, or after its refresh interval.
                delay = self.bacalhau.refresh_interval - (time.monotonic() - started)
                await wait_for_wake(self._wake, max(0.05, delay))
        finally:
            await poller.aclose()

    def watch_found(self, found: ContentionRound | None) -> None:
        if found is None:
            return
        self.table.show(found.contended, found.at)
        self.query_one(StallTable).show(found.tasks, found.at)
        self._show_sites()
        self._retitle()
        summary = Text("\n".join(stall_lines(found.stalls, stack_frames=4)))
        self.query_one("#locks-stall-summary", Static).update(summary)
        tasks = self.query_one(StallTable)
        tasks.border_title = tasks.title("Tasks that stalled")

    def _show_sites(self) -> None:
        table = self.table
        key = table.cursor_key
        self.query_one(LockSites).row = table.records.get(key) if key is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, LockTable):
            self._show_sites()
