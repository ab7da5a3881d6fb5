"""The TUI driven by Textual's pilot against a real 3-node devstack.

Each test runs the real app (``BacalhauApp`` over a ``ClusterSource`` on the
cluster's state directory, polling over HTTP) at 120x40 and waits on what the screen
shows, with deadlines; nothing here sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest
from textual import events
from textual.command import CommandList, CommandPalette

from tests.conftest import Devstack
from tests.tui_pilot import SIZE, run, until, warmed_up
from tui.app import BacalhauApp
from tui.format import MISSING
from tui.messages import JobSelected
from tui.screens.confirm_stop import ConfirmStopScreen
from tui.screens.help import HelpScreen
from tui.screens.job import JobScreen
from tui.screens.jobs import JobsScreen
from tui.screens.nodes import NodesScreen
from tui.source import ClusterSource, NodeStatus
from tui.widgets.job_table import JobTable
from tui.widgets.node_table import NodeTable

pytestmark = [pytest.mark.slow]


class RecordingApp(BacalhauApp):
    """The app, remembering the JobSelected messages that reached it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.selected_jobs: list[str] = []

    def on_job_selected(self, message: JobSelected) -> None:
        # (Textual then calls BacalhauApp.on_job_selected too: handlers run up the MRO.)
        self.selected_jobs.append(message.job_id)


def _app(stack: Devstack, refresh: float = 0.5, **kwargs: Any) -> RecordingApp:
    return RecordingApp(ClusterSource(stack.state_dir), refresh=refresh, **kwargs)


def _nodes_table(app: BacalhauApp) -> NodeTable:
    return app.screen.query_one(NodeTable)


async def _warm(pilot: Any, app: BacalhauApp) -> None:
    """Wait until the app has mounted every view once and is back home: a key typed
    while it does reaches whichever view is being mounted."""
    await until(pilot, lambda: warmed_up(app), 30, "every view mounted")


def _live_figures(table: NodeTable) -> bool:
    """Every node row shows a CPU % and an RSS."""
    rows = table.records.values()
    return len(rows) == 3 and all(
        r.status is NodeStatus.UP
        and table.cell_text(r.peer_id, "cpu") != MISSING
        and table.cell_text(r.peer_id, "rss").endswith(("M", "G"))
        for r in rows
    )


@pytest.mark.timeout(120)
def test_nodes_view_shows_every_node_live(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.screen, NodesScreen)
            table = _nodes_table(app)
            await until(pilot, lambda: _live_figures(table), 30, "3 rows with CPU and RSS")
            assert table.row_count == 3
            assert cluster3.state is not None
            assert table.visible_keys == [n.peer_id for n in cluster3.state.nodes]
            # the rate columns need two rounds, then every node has them
            await until(
                pilot,
                lambda: all(table.cell_text(k, "waits") != MISSING for k in table.visible_keys),
                30,
                "lock wait rates",
            )
            # the figures move in place: the same rows, refreshed
            rounds = app.source.statistics().rounds
            await until(pilot, lambda: app.source.statistics().rounds >= rounds + 2, 30, "polls")
            assert table.row_count == 3
            summary = app.snapshot.summary if app.snapshot else None
            assert summary is not None and summary.up == 3 and summary.rss_bytes
            first = table.visible_keys[0]
            print(f"\nnode-0: {[table.cell_text(first, c.key) for c in table.RECORD_COLUMNS]}")

    run(go)


@pytest.mark.timeout(180)
def test_jobs_view_shows_a_submitted_job_to_completion(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            await _warm(pilot, app)
            await pilot.press("j")
            assert isinstance(app.screen, JobsScreen)
            assert app.source.watch_jobs
            table = app.screen.query_one(JobTable)
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(
                    f"{cluster3.api(1)}/api/v1/jobs",
                    json={"image": "busybox", "command": ["echo", "from the tui test"]},
                )
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]
            await until(pilot, lambda: job_id in table.records, 30, f"job {job_id} listed")
            await until(
                pilot,
                lambda: table.cell_text(job_id, "state") == "completed",
                120,
                f"job {job_id} completed on screen",
            )
            assert table.cell_text(job_id, "requester") == "node-1"
            assert table.cell_text(job_id, "total") != MISSING
            assert table.cell_text(job_id, "concurrency") == "1"

            # enter on its row posts JobSelected and opens the job's view; esc closes it
            table.focus()
            table.move_cursor(row=table.visible_keys.index(job_id))
            await pilot.press("enter")
            await until(pilot, lambda: app.selected_jobs, 5, "JobSelected")
            assert app.selected_jobs == [job_id]
            await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "the job view")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen), 5, "the jobs view")

            # esc goes back home, and the jobs list stops being polled
            await pilot.press("escape")
            assert isinstance(app.screen, NodesScreen)
            assert not app.source.watch_jobs

    run(go)


@pytest.mark.timeout(120)
def test_filter_narrows_the_rows(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            table = _nodes_table(app)
            await until(pilot, lambda: table.row_count == 3, 30, "3 rows")
            await _warm(pilot, app)
            await pilot.press("slash")
            await pilot.press(*"node-1")
            assert cluster3.state is not None
            node1 = cluster3.state.nodes[1].peer_id
            await until(pilot, lambda: table.visible_keys == [node1], 5, "the filter")
            assert "1 of 3" in str(table.border_title)
            # typing does not trigger the app's keys ("q" would quit, "j" switch view)
            await pilot.press("backspace", *" q j")
            assert isinstance(app.screen, NodesScreen) and app.is_running
            await pilot.press("escape")  # clears and closes the filter
            await until(pilot, lambda: table.row_count == 3, 5, "every row back")
            assert table.has_focus
            # typed fast (all the keys queued at once, as a terminal delivers a paste or a
            # quick typist): every key after "/" goes to the filter line
            for key, char in [("slash", "/"), ("n", "n"), ("o", "o"), ("d", "d"), ("e", "e")]:
                app.post_message(events.Key(key, char))
            await until(pilot, lambda: table.filter_text == "node", 5, "the fast-typed filter")
            assert isinstance(app.screen, NodesScreen)
            await pilot.press("escape")
            await until(pilot, lambda: table.row_count == 3, 5, "every row back")
            # one more round keeps them all
            rounds = app.source.statistics().rounds
            await until(pilot, lambda: app.source.statistics().rounds > rounds, 10, "a poll")
            assert table.row_count == 3

    run(go)


@pytest.mark.timeout(120)
def test_sort_help_palette_theme_and_quit(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3, ask_stop_on_quit=True)
        async with app.run_test(size=SIZE) as pilot:
            table = _nodes_table(app)
            await until(pilot, lambda: _live_figures(table), 30, "live rows")
            await _warm(pilot, app)
            # sort by RSS, largest first, with the keys; then reverse
            for _ in table.RECORD_COLUMNS:  # ">" steps through the columns
                if table.sort_column == "rss":
                    break
                await pilot.press("greater_than_sign")
            assert table.sort_column == "rss"
            assert table.sort_reverse  # figures sort largest first
            rss = {k: table.records[k].rss_bytes or 0 for k in table.visible_keys}
            assert list(rss.values()) == sorted(rss.values(), reverse=True)
            await pilot.press("r")
            assert not table.sort_reverse
            # a click on a header sorts by it
            await pilot.click(NodeTable, offset=(2, 1))  # row 0 is the border
            assert table.sort_column == "node"

            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert isinstance(app.screen, NodesScreen)

            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), 5, "the palette")
            await pilot.press(*"Jobs view")
            commands = app.screen.query_one(CommandList)
            await until(
                pilot,
                lambda: (
                    commands.option_count
                    and "Jobs view" in str(commands.get_option_at_index(0).prompt)
                ),
                5,
                "the command found",
            )
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen), 5, "the jobs view")
            await pilot.press("n")

            dark = app.current_theme.dark
            await pilot.press("ctrl+t")
            assert app.current_theme.dark is not dark

            await pilot.press("q")
            assert isinstance(app.screen, ConfirmStopScreen)
            await pilot.press("escape")  # stay
            assert app.is_running and isinstance(app.screen, NodesScreen)
            await pilot.press("q")
            await pilot.press("n")  # leave the cluster running
        assert app.return_value is False

    run(go)


@pytest.mark.timeout(120)
def test_keys_take_effect_while_the_app_polls(cluster3: Devstack) -> None:
    """View switches and cursor moves, each pressed right after a poll round came in
    (with the app polling every second): every key takes effect."""

    async def go() -> None:
        app = _app(cluster3, refresh=1.0)  # the default for a small cluster
        async with app.run_test(size=SIZE) as pilot:
            table = _nodes_table(app)
            await until(pilot, lambda: _live_figures(table), 30, "live rows")
            await _warm(pilot, app)
            presses = [("j", "jobs"), ("n", "nodes")] * 3 + [("down", "nodes")] * 2
            for key, mode in presses:
                done = app.source.statistics().rounds
                await until(pilot, lambda d=done: app.source.statistics().rounds > d, 30, "a poll")
                if key == "down":  # on the nodes view, which "n" brought back
                    table = _nodes_table(app)
                    row = table.cursor_row
                    await pilot.press(key)
                    await until(
                        pilot, lambda t=table, r=row: t.cursor_row != r, 5, "the cursor to move"
                    )
                else:
                    await pilot.press(key)
                    await until(pilot, lambda m=mode: app.current_mode == m, 5, f"the {mode} view")

    run(go)


@pytest.mark.timeout(240)
def test_a_stopped_node_shows_down(cluster3: Devstack) -> None:
    """It stops node 2 of the shared cluster, and starts it again at the end: the next
    test finds the cluster whole."""
    assert cluster3.state is not None
    node2 = cluster3.state.nodes[2]

    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            table = _nodes_table(app)
            await until(pilot, lambda: _live_figures(table), 30, "live rows")
            os.kill(node2.pid, signal.SIGTERM)  # a node process this test's cluster started
            await until(
                pilot,
                lambda: table.cell_text(node2.peer_id, "status") in ("down", "unreachable"),
                30,
                "node-2 not up",
            )
            await until(
                pilot, lambda: table.cell_text(node2.peer_id, "status") == "down", 30, "down"
            )
            assert table.cell_text(node2.peer_id, "cpu") == MISSING
            assert app.snapshot is not None and app.snapshot.summary.down == 1
            assert app.is_running

    try:
        run(go)
    finally:
        cluster3.restart(node2)
