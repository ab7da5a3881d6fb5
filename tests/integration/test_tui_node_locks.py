"""The node and locks views driven by Textual's pilot against a real 3-node devstack.

Each test runs the real app (``BacalhauApp`` over a ``ClusterSource`` on the
cluster's state directory, talking HTTP to real node processes) at 120x40 and waits
on what the screen shows, with deadlines; nothing here sleeps to synchronise. The
node view is opened as a user does (``enter`` on a row of the nodes view), ``p``
profiles a node for 2 seconds, and the locks view (``l``) is looked at after noop
jobs made the nodes' locks contended.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot

from tests.conftest import Devstack, wait_job_end
from tests.tui_pilot import SIZE, run, until
from tui.app import BacalhauApp
from tui.screens.locks import LocksScreen
from tui.screens.node import NodeScreen
from tui.screens.nodes import NodesScreen
from tui.screens.profile_prompt import ProfilePrompt
from tui.source import ClusterSource
from tui.widgets.lock_sites import LockSites
from tui.widgets.lock_table import LockTable, NodeLockTable
from tui.widgets.node_table import NodeTable
from tui.widgets.profile_panel import CallTree, ProfilePanel, TopFrames
from tui.widgets.stall_table import StallTable

pytestmark = [pytest.mark.slow]


def _app(stack: Devstack, refresh: float = 0.5) -> BacalhauApp:
    return BacalhauApp(ClusterSource(stack.state_dir), refresh=refresh)


async def _open_node(pilot: Pilot[Any], stack: Devstack, index: int) -> NodeScreen:
    """``enter`` on node ``index``'s row of the nodes view; its view once it shows data."""
    app = pilot.app
    assert isinstance(app.screen, NodesScreen)
    table = app.screen.query_one(NodeTable)
    await until(pilot, lambda: table.row_count == 3, 30, "3 rows")
    assert stack.state is not None
    peer_id = stack.state.nodes[index].peer_id
    table.focus()
    table.move_cursor(row=table.visible_keys.index(peer_id))
    await pilot.press("enter")
    screen = await until(
        pilot,
        lambda: app.screen if isinstance(app.screen, NodeScreen) else None,
        10,
        "the node view",
    )
    assert screen.peer_id == peer_id
    return screen


@pytest.mark.timeout(120)
def test_node_view_shows_its_locks_stalls_and_log(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_node(pilot, cluster3, 1)
            table = screen.query_one(NodeLockTable)
            await until(pilot, lambda: table.row_count >= 5, 30, "the node's locks")
            names = {key.split("@")[0] for key in table.visible_keys}
            assert {"store.sqlite", "libp2p.yamux.write"} <= names
            found = screen.contention
            assert found is not None and found.nodes == ("node-1",)
            # the sites panel shows the lock under the cursor
            sites = screen.query_one(LockSites)
            await until(pilot, lambda: sites.row is not None, 10, "a lock's call sites")
            assert sites.row is not None and sites.row.key == table.cursor_key
            # its log tail, over GET /api/v1/logs: the file cluster.json names
            assert cluster3.state is not None
            await until(pilot, lambda: screen.log_shown, 20, "the log tail")
            assert str(screen.log_file) == cluster3.state.nodes[1].log_file
            assert any('"logger": "node.' in line for line in screen.log_shown)
            # figures over time: a few rounds of the app's poller
            await until(pilot, lambda: len(screen._rss) >= 3, 30, "three samples")
            stalls = screen.query_one("#node-stalls-text")
            assert "steps over" in str(stalls.content)
            # the header names it; esc goes back to the nodes view
            assert "node-1" in str(screen.query_one("#node-header").content)
            await pilot.press("escape")
            assert isinstance(app.screen, NodesScreen)

    run(go)


@pytest.mark.timeout(180)
def test_p_profiles_the_node_for_2_seconds(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_node(pilot, cluster3, 0)
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, ProfilePrompt), 5, "the question")
            await pilot.press("2", "enter")  # the default 10 is selected: "2" replaces it
            panel = screen.query_one(ProfilePanel)
            await until(pilot, lambda: panel.running, 5, "the profile to start")
            await until(pilot, lambda: panel.result is not None, 90, "the profile")
            result = panel.result
            assert result is not None and result.seconds == 2 and result.samples > 0
            assert not result.save_error
            assert [p.parent for p in result.paths] == [cluster3.state_dir / "profiles"] * 3
            assert result.html is not None and result.html.name.startswith("node-0-")
            assert "<html" in result.html.read_text().lower()
            assert result.speedscope is not None
            assert "profiles" in json.loads(result.speedscope.read_text())
            # the call tree and the top frames, in the app
            lines = screen.query_one(CallTree).lines()
            assert lines and " run " in f" {lines[0]}"
            assert screen.query_one(TopFrames).row_count > 0
            paths = str(screen.query_one("#profile-paths").content)
            assert str(result.html) in paths and str(result.speedscope) in paths
            print(f"\n{result.samples} samples; top of the tree: {lines[:4]}")

    run(go)


def _contended(apis: list[str]) -> int:
    return sum(
        lock["contended"]
        for api in apis
        for lock in httpx.get(f"{api}/api/v1/debug/locks", timeout=10).json()["locks"]
    )


@pytest.mark.timeout(240)
def test_locks_view_shows_contention_after_jobs(cluster3: Devstack) -> None:
    # noop jobs over HTTP, a batch on every node at once, until some lock was waited for
    apis = cluster3.apis
    for _batch in range(10):
        ids = []
        for api in apis * 2:
            answer = httpx.post(f"{api}/api/v1/jobs", json={"engine": "noop"}, timeout=30)
            assert answer.status_code == 201, answer.text
            ids.append((api, answer.json()["id"]))
        for api, job_id in ids:
            wait_job_end(api, job_id, timeout=60)
        if _contended(apis):
            break
    assert _contended(apis), "no lock was ever waited for"

    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.source.statistics().rounds >= 1, 30, "a poll")
            await pilot.press("l")
            screen = await until(
                pilot,
                lambda: app.screen if isinstance(app.screen, LocksScreen) else None,
                10,
                "the locks view",
            )
            table = screen.query_one(LockTable)
            await until(pilot, lambda: table.row_count > 0, 30, "a contended lock")
            found = screen.found
            assert found is not None and found.nodes == ("node-0", "node-1", "node-2")
            top = table.visible_keys[0]
            row = table.records[top]
            assert row.contended > 0 and row.worst_node in found.nodes
            assert table.cell_text(top, "nodes") == f"{row.contended_nodes}/3"
            assert "3/3 nodes answered" in str(table.border_subtitle)
            # live: a second round gives rates, rows updated in place
            await until(pilot, lambda: screen.found and screen.found.interval_s, 30, "rates")
            assert table.records[top].waits_per_s is not None
            sites = screen.query_one(LockSites)
            await until(pilot, lambda: sites.row is not None, 10, "the call sites")
            assert sites.row is not None and sites.row.key == table.cursor_key
            assert sites.row.where and sites.row.waiters  # which nodes, and where they waited
            summary = str(screen.query_one("#locks-stall-summary").content)
            assert "steps over" in summary and "scheduling delay" in summary
            screen.query_one(StallTable)  # the per-task table is there (empty if no stall)
            print(
                f"\ntop lock: {row.name} waited {row.contended} times on"
                f" {[n for n, _ in row.where]}; stalls: {found.stalls.stalls}"
            )
            # leaving the view stops its polling
            await pilot.press("n")
            assert isinstance(app.screen, NodesScreen)
            await until(
                pilot,
                lambda: screen.poller is not None and screen.poller.in_flight == 0,
                10,
                "the locks view's requests to end",
            )
            assert not [w for w in app.workers if w.node is screen and w.is_running]

    run(go)
