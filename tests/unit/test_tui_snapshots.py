"""Snapshots (pytest-textual-snapshot) of the TUI's views at 120x40 over the documents
captured from a real 3-node devstack (``tui_fake``), with fixed clocks: the nodes view
after two rounds (so rates exist), on simulated hosts, sorted and filtered, the jobs
view, the help screen and the quit question. ``pytest --snapshot-update`` rewrites
them after a deliberate change; look at the SVGs under ``__snapshots__/`` before
committing them.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui_pilot import SIZE, rounds, until
from tests.unit.tui_fake import NOW, FakeCluster
from tui.app import BacalhauApp
from tui.source import ClusterSource
from tui.widgets.job_table import JobTable

pytestmark = pytest.mark.timeout(120)


def _app(*, hosts: bool = False, **kwargs: Any) -> BacalhauApp:
    """The app over the captured cluster; with ``hosts``, node ``i`` on host ``i % 2``."""
    fake = FakeCluster()
    ticks = itertools.count()
    targets = fake.targets()
    if hosts:
        targets = [dataclasses.replace(t, host=t.index % 2) for t in targets]
    source = ClusterSource(
        targets=targets,
        transport=fake.transport(),
        clock=lambda: NOW,
        timer=lambda: next(ticks) * 0.004,  # every round "takes" 4 ms
    )
    # A refresh too long to come round during a test: the rounds are the ones asked for.
    return BacalhauApp(source, refresh=60.0, **kwargs)


async def _rounds(pilot: Pilot[Any], count: int) -> None:
    """Let the app poll ``count`` rounds in all (see :func:`tests.tui_pilot.rounds`)."""
    await rounds(pilot, count)
    await pilot.pause()


def test_nodes_view(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_nodes_view_on_two_hosts(snap_compare: Any) -> None:
    """A devstack on simulated hosts: the host column beside the node."""

    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)

    assert snap_compare(_app(hosts=True), terminal_size=SIZE, run_before=before)


def test_nodes_view_sorted_and_filtered(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign")
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign")
        await pilot.press("slash", *"node-", "enter")

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_jobs_view(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)
        await pilot.press("j")
        table = pilot.app.screen.query_one(JobTable)
        await until(pilot, lambda: len(table.records) >= 5, 20, "the 5 jobs listed", 0.05)
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_help_screen(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=SIZE, run_before=before)


def test_quit_asks_to_stop_the_cluster(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)
        await pilot.press("q")
        await pilot.pause()

    assert snap_compare(_app(ask_stop_on_quit=True), terminal_size=SIZE, run_before=before)


def test_light_theme_at_100_columns(snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _rounds(pilot, 2)
        await pilot.press("ctrl+t")
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(100, 30), run_before=before)
