"""The node and locks views over documents captured from a real 3-node devstack.

Snapshots (pytest-textual-snapshot, 120x40, fixed clocks, UTC): the node view of
node-0 (figures, locks, call sites, stalls, log tail; and its credibility tab, from
a hand-made record) and the locks view.
``pytest --snapshot-update`` rewrites them after a deliberate change; look at the
SVGs under ``__snapshots__/`` before committing them.

Pilot tests on the same fake (:mod:`tests.unit.tui_fake_locks`): ``p`` profiles
and saves the files, a busy node says so, the log is followed, the credibility tab
shows the requester's record worst first, and each view asks the nodes only while it
is shown. :class:`~tui.screens.locks.ContentionPoller`'s
concurrency bound is checked against a slow transport.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.screen import Screen

from devstack.client.aio import AsyncNodeClient
from tests.tui_pilot import SIZE, rounds, screen_shown, until
from tests.unit.tui_fake import NOW, target
from tests.unit.tui_fake_locks import (
    CREDIBILITY,
    EXCLUDED_FOR,
    N0,
    N1,
    N2,
    PROFILE,
    FakeContentionCluster,
    write_state,
)
from tui.app import BacalhauApp
from tui.format import MISSING
from tui.screens.help import HelpScreen, key_rows
from tui.screens.locks import ContentionPoller, LocksScreen
from tui.screens.node import NodeScreen
from tui.screens.nodes import NodesScreen
from tui.screens.profile_prompt import ProfilePrompt
from tui.source import ClusterSource
from tui.widgets.credibility_table import CredibilityTable
from tui.widgets.lock_table import LockTable, NodeLockTable
from tui.widgets.profile_panel import CallTree, ProfilePanel, TopFrames

pytestmark = pytest.mark.timeout(120)
WAIT_S = 20.0  # for what the app shows next


class FakeApp(BacalhauApp):
    """The app with its node and locks views on a :class:`FakeContentionCluster`."""

    def __init__(self, fake: FakeContentionCluster, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fake = fake
        self.clock: Callable[[], float] = lambda: NOW  # the views' clock (rates need a real one)

    def open_node(self, peer_id: str) -> None:
        self.push_screen(NodeScreen(peer_id, connect=self.fake.connect, clock=self.clock))


class FakeLocksScreen(LocksScreen):
    """The locks view on the app's fake cluster and clock."""

    def __init__(self) -> None:
        super().__init__()
        app = self.app
        assert isinstance(app, FakeApp)
        self._connect, self._clock = app.fake.connect, lambda: app.clock()


FakeApp.MODES = {**BacalhauApp.MODES, "locks": FakeLocksScreen}


def _app(state_dir: Path, refresh: float = 60.0) -> FakeApp:
    write_state(state_dir)
    fake = FakeContentionCluster()
    # Every view asks for the same round: which view asks first (the app mounts them all
    # once at start) must not change what the snapshots show.
    fake.locks_round = 1
    ticks = itertools.count()
    source = ClusterSource(
        state_dir,
        transport=fake.transport(),
        clock=lambda: NOW,
        timer=lambda: next(ticks) * 0.004,
    )
    return FakeApp(fake, source, refresh=refresh)


def _polling(app: BacalhauApp, screen: Screen[Any]) -> bool:
    """Whether a worker of ``screen`` (its polling of the nodes) still runs."""
    return any(w.node is screen and w.is_running for w in app.workers)


async def _open_node0(pilot: Pilot[Any]) -> NodeScreen:
    app = pilot.app
    await rounds(pilot, 3)
    await until(pilot, lambda: isinstance(app.screen, NodesScreen), WAIT_S, "the nodes view")
    await pilot.press("enter")  # the cursor is on node-0
    screen = await screen_shown(pilot, NodeScreen, WAIT_S, "node-0")
    await until(pilot, lambda: screen.contention is not None, WAIT_S, "its locks")
    await until(pilot, lambda: len(screen.log_shown) >= 13, WAIT_S, "its log")
    return screen


async def _three_samples(pilot: Pilot[Any], screen: NodeScreen) -> None:
    """Figures over a few rounds, the same every run."""
    for _ in range(10):
        if len(screen._rss) >= 3:
            break
        await rounds(pilot, pilot.app.source.statistics().rounds + 1)
    assert len(screen._rss) >= 3, "no three samples of figures in 10 rounds"


def test_node_view(snap_compare: Any, tmp_path: Path, utc: None) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        screen = await _open_node0(pilot)
        await _three_samples(pilot, screen)
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=SIZE, run_before=before)


def test_node_view_credibility(snap_compare: Any, tmp_path: Path, utc: None) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        screen = await _open_node0(pilot)
        await _three_samples(pilot, screen)
        await until(pilot, lambda: screen.credibility is not None, WAIT_S, "its credibility")
        await pilot.press("t", "t")  # the log, the profile, the credibility
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=SIZE, run_before=before)


def test_locks_view(snap_compare: Any, tmp_path: Path) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, FakeApp)
        await rounds(pilot, 2)
        await pilot.press("l")
        screen = await screen_shown(pilot, LocksScreen, WAIT_S, "locks")
        await until(pilot, lambda: screen.found is not None, WAIT_S, "the first round")
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=SIZE, run_before=before)


def run(coroutine: Any) -> None:
    asyncio.run(coroutine)


def shown(widget: Any) -> str:
    """The text a Static shows."""
    console = Console(width=200, record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def test_node_view_shows_locks_sites_and_stalls(tmp_path: Path) -> None:
    async def go() -> None:
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_node0(pilot)
            table = screen.query_one(NodeLockTable)
            assert table.visible_keys[0].startswith("libp2p.yamux.write@")
            assert table.cell_text(table.visible_keys[0], "contended") == "71"
            sites = shown(screen.query_one("#node-sites-text"))
            assert "yamux.py:874 in _write_frame" in sites
            await pilot.press("down")  # the sites follow the cursor
            second = table.visible_keys[1]
            await until(
                pilot,
                lambda: second.split("@")[0] in shown(screen.query_one("#node-sites-text")),
                WAIT_S,
                "the next lock's sites",
            )
            stalls = shown(screen.query_one("#node-stalls-text"))
            assert "stalls (steps over 20 ms)" in stalls and "worst: " in stalls
            assert "Locks 8 · 1 waited for" in str(table.border_title)
            # ? lists the view's own keys
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            keys = dict(key_rows(screen))
            assert keys["p"] == "Profile" and keys["t"] == "Next tab" and keys["m"] == "Maximize"
            await pilot.press("escape")
            assert app.screen is screen
            # m maximizes the focused pane, esc restores it before going back
            await pilot.press("m")
            assert screen.maximized is table
            await pilot.press("escape")
            assert screen.maximized is None and app.screen is screen
            # a node that stops answering: its last figures stay, the error shows
            app.fake.failing.add("node0.test")
            app.poll_now()
            await until(pilot, lambda: "boom" in str(table.border_subtitle), WAIT_S, "the error")
            assert table.row_count == 8
            await pilot.press("escape")
            assert isinstance(app.screen, NodesScreen)

    run(go())


def test_the_credibility_tab_shows_the_requesters_record_worst_first(tmp_path: Path) -> None:
    async def go() -> None:
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_node0(pilot)
            await until(pilot, lambda: screen.credibility is not None, WAIT_S, "its record")
            tabs = screen.query_one("#node-tabs")
            label = str(tabs.get_tab("node-cred-tab").label)  # type: ignore[attr-defined]
            assert label == "Credibility · caught 2, excluded 1"
            await pilot.press("t", "t")
            assert tabs.active == "node-cred-tab"  # type: ignore[attr-defined]
            table = screen.query_one(CredibilityTable)
            assert table.visible_keys == [N2, N1, N0]  # most caught, then fewest agreed
            assert [table.cell_text(N2, c) for c in ("node", "agreed", "caught")] == [
                "node-2",
                "1",
                "2",
            ]
            assert table.cell_text(N2, "excluded") == f"for {EXCLUDED_FOR / 60:.0f}m"
            assert table.cell_text(N0, "excluded") == MISSING
            assert str(table.border_title) == "Nodes 3 · sort caught ▼"
            summary = shown(screen.query_one("#node-cred-summary"))
            assert "3 node(s) known · 2 trusted · 1 excluded" in summary
            assert "their proposals: 12 agreed, 2 caught" in summary
            assert "escalations 1 · spot checks 2 · extra runs 4" in summary
            # t again: back to the log
            await pilot.press("t")
            assert tabs.active == "node-log-tab"  # type: ignore[attr-defined]

            # a node that stops answering: its last record stays, the error shows
            app.fake.failing.add("node0.test")
            app.poll_now()
            await until(pilot, lambda: "boom" in str(table.border_subtitle), WAIT_S, "the error")
            assert table.row_count == 3
            # a node older than the record: said so, and no rows
            app.fake.failing.clear()
            app.fake.info_extra.clear()
            app.poll_now()
            await until(
                pilot,
                lambda: "does not report one" in shown(screen.query_one("#node-cred-summary")),
                WAIT_S,
                "an older node",
            )
            assert table.row_count == 0
            label = str(tabs.get_tab("node-cred-tab").label)  # type: ignore[attr-defined]
            assert label == "Credibility"
            assert CREDIBILITY["credibility"][N1]["caught"] == 0  # the fixture is unchanged

    run(go())


def test_p_profiles_saves_and_shows_the_call_tree(tmp_path: Path) -> None:
    async def go() -> None:
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_node0(pilot)
            # esc on the question asks nothing
            await pilot.press("p")
            await until(
                pilot, lambda: isinstance(app.screen, ProfilePrompt), WAIT_S, "the question"
            )
            await pilot.press("escape")
            assert app.screen is screen and app.fake.profiles_asked == []
            # 3 seconds: the default 10 is selected, typing replaces it
            await pilot.press("p")
            await until(
                pilot, lambda: isinstance(app.screen, ProfilePrompt), WAIT_S, "the question"
            )
            await pilot.press("3", "enter")
            panel = screen.query_one(ProfilePanel)
            await until(pilot, lambda: panel.result is not None, WAIT_S, "the profile")
            assert app.fake.profiles_asked == ["3"]
            result = panel.result
            assert result is not None and result.samples == PROFILE["samples"]
            assert [p.parent for p in result.paths] == [tmp_path / "profiles"] * 3
            assert result.html is not None and result.html.read_text() == PROFILE["html"]
            assert result.speedscope is not None and result.speedscope.exists()
            assert result.paths[1].read_text() == PROFILE["text"]
            assert result.html.name.startswith("node-0-")
            tree = screen.query_one(CallTree)
            lines = tree.lines()
            assert lines[0].startswith("2.001s run")
            assert any("Yamux._handle_incoming_with_ready_signal" in line for line in lines)
            assert any("[21 frames hidden]" in line for line in lines)
            assert screen.query_one(TopFrames).row_count == len(PROFILE["top"])
            paths = shown(screen.query_one("#profile-paths"))
            assert str(result.html) in paths and str(result.speedscope) in paths
            # t goes on from the profile to the credibility, then back to the log
            await pilot.press("t")
            assert screen.query_one("#node-tabs").active == "node-cred-tab"  # type: ignore[attr-defined]
            await pilot.press("t")
            assert screen.query_one("#node-tabs").active == "node-log-tab"  # type: ignore[attr-defined]
            # a node that is already profiling says so
            app.fake.busy = True
            await pilot.press("p")
            await until(
                pilot, lambda: isinstance(app.screen, ProfilePrompt), WAIT_S, "the question"
            )
            await pilot.press("enter")  # 3 again: the last duration asked
            await until(
                pilot,
                lambda: "already running" in shown(screen.query_one("#profile-status")),
                WAIT_S,
                "the refusal",
            )
            assert app.fake.profiles_asked == ["3", "3"] and not screen.profiling

    run(go())


def test_the_log_is_followed_and_polling_stops_when_hidden(tmp_path: Path) -> None:
    async def go() -> None:
        app = _app(tmp_path, refresh=0.2)
        app.clock = time.time
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_node0(pilot)
            assert str(screen.log_file) == app.fake.log_path("node0.test")
            assert str(screen.query_one("#node-log").border_title).startswith("node-0.log · ")
            app.fake.logs["node0.test"] += (
                b'{"ts": 1.0, "level": "info", "logger": "node.x", "pid": 1, "msg": "hi"}\n'
                b"half a li"
            )
            await until(
                pilot, lambda: screen.log_shown[-1].endswith('"msg": "hi"}'), WAIT_S, "new line"
            )
            app.fake.logs["node0.test"] += b"ne\n"
            await until(
                pilot, lambda: screen.log_shown[-1] == "half a line", WAIT_S, "the whole line"
            )
            assert len(screen.log_shown) == 15
            # a log that shrank (truncated, replaced) is shown afresh
            app.fake.logs["node0.test"] = b"after a restart\n"
            await until(
                pilot, lambda: list(screen.log_shown) == ["after a restart"], WAIT_S, "a fresh tail"
            )
            # asked every refresh while shown ...
            served = app.fake.locks_served.get("node0.test", 0)
            await until(
                pilot,
                lambda: app.fake.locks_served.get("node0.test", 0) > served + 1,
                WAIT_S,
                "polls",
            )
            # ... and no more once gone
            await pilot.press("escape")
            await until(pilot, lambda: not _polling(app, screen), WAIT_S, "its polling to stop")
            served = app.fake.locks_served["node0.test"]
            rounds = app.source.statistics().rounds
            await until(
                pilot, lambda: app.source.statistics().rounds >= rounds + 3, WAIT_S, "rounds"
            )
            assert app.fake.locks_served["node0.test"] == served

            # the locks view asks every node while shown, and only then
            await pilot.press("l")
            locks = await until(
                pilot,
                lambda: app.screen if isinstance(app.screen, LocksScreen) else None,
                WAIT_S,
                "it",
            )
            await until(
                pilot,
                lambda: locks.found is not None and locks.found.interval_s,
                WAIT_S,
                "two rounds",
            )
            table = locks.query_one(LockTable)
            top = table.visible_keys[0]
            assert top.startswith("libp2p.yamux.write@")
            assert table.cell_text(top, "nodes") == "3/3"
            assert table.cell_text(top, "rate") != MISSING
            assert "3/3 nodes answered" in str(table.border_subtitle)
            app.fake.failing.add("node2.test")
            await until(
                pilot,
                lambda: "2/3 nodes answered" in str(table.border_subtitle),
                WAIT_S,
                "an error",
            )
            assert "node-2: boom" in str(table.border_subtitle)
            assert table.cell_text(top, "nodes") == "2/2"  # the merge of those who answered
            await app.switch_mode("nodes")
            await until(pilot, lambda: not _polling(app, locks), WAIT_S, "its polling to stop")
            served = dict(app.fake.locks_served)
            rounds = app.source.statistics().rounds
            await until(
                pilot, lambda: app.source.statistics().rounds >= rounds + 3, WAIT_S, "rounds"
            )
            assert app.fake.locks_served == served

    run(go())


def test_poller_keeps_to_its_concurrency_bound() -> None:
    async def go() -> None:
        fake = FakeContentionCluster()
        now = 0
        most = 0
        # Every request waits until three are out at once, so the bound is shown to be
        # reached, not only never passed (a poller that never has three out: its
        # requests time out and fail).
        three_out = asyncio.Event()

        async def slow(request: httpx.Request) -> httpx.Response:
            nonlocal now, most
            now += 1
            most = max(most, now)
            try:
                if now == 3:
                    three_out.set()
                await asyncio.wait_for(three_out.wait(), WAIT_S)
            finally:
                now -= 1
            return fake.handler(request)

        def connect(api: str, timeout: float = 10.0) -> AsyncNodeClient:
            return AsyncNodeClient(api, timeout=timeout, transport=httpx.MockTransport(slow))

        targets = [target(node) for node in list(fake.by_host.values()) * 4]
        poller = ContentionPoller(connect, max_concurrency=3)
        try:
            result = await poller.poll(targets)
        finally:
            await poller.aclose()
        assert result.asked == 12 and len(result.reports) == 12 and not result.errors
        assert most == poller.max_in_flight == 3

    run(go())
