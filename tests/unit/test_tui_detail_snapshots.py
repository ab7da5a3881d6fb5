"""Snapshots (pytest-textual-snapshot) of the job view and the submit form at 120x40.

The cluster is the one ``tui_fake`` replays, with jobs captured from a real devstack
on node-0 (``tui_fake_jobs``): a sharded step-mode job at its verdict gate, a
step-mode job at its publish gate, a job whose runs disagreed (ended ``error``), a
sharded job completed; and, hand-made (``tui_fake_checks``), a job escalated to one
more node then completed and a step-mode job whose verdict asks for 1 more run after
its spot check disagreed; the form as it opens and with a value the API refuses.
Clocks are fixed, so the figures are the same every run. ``pytest --snapshot-update``
rewrites them after a deliberate change; look at the SVGs under ``__snapshots__/``
before committing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui_pilot import OWN_ROUNDS, SIZE, rounds, until
from tests.unit.tui_fake_jobs import (
    FakeJobsCluster,
    fake_source,
    job_id,
    serve_job_screens,
)
from tui.app import BacalhauApp
from tui.screens.job import JobScreen
from tui.screens.submit import SubmitScreen
from tui.widgets.output_pane import OutputPane
from tui.widgets.timeline import TimelineTable

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJobsCluster]:
    """The fake cluster; the screens' own API clients reach it too."""
    cluster = FakeJobsCluster()
    serve_job_screens(cluster, monkeypatch)
    yield cluster


def _app(fake: FakeJobsCluster) -> BacalhauApp:
    source = fake_source(fake)
    # A refresh too long to come round during a test: the job view asks once.
    return BacalhauApp(source, refresh=60.0)


async def _first_round(pilot: Pilot[Any]) -> None:
    await rounds(pilot, OWN_ROUNDS)  # every view mounted, and the app's own rounds in


def _output_shown(fake: FakeJobsCluster, job: str, pane: OutputPane) -> bool:
    """Whether the pane shows every line the job's feed has served (and its end)."""
    feed = fake.outputs.get(job_id(job))
    if feed is None or pane.waiting:
        return False
    lines = sum("line" in r for r in feed.records)
    return pane.received == lines and len(pane.shown) >= lines and feed.ended == bool(pane.ended)


async def _open_job(pilot: Pilot[Any], job: str, fake: FakeJobsCluster) -> JobScreen:
    await _first_round(pilot)
    screen = JobScreen(job_id(job))
    await pilot.app.push_screen(screen)
    await until(
        pilot,
        lambda: screen.describe is not None and screen.query_one(TimelineTable).row_count,
        20,
        f"the {job} job's timeline",
        0.05,
    )
    pane = screen.query_one(OutputPane)
    await until(pilot, lambda: _output_shown(fake, job, pane), 20, f"the {job} job's output", 0.05)
    await pilot.pause()
    return screen


async def _open_form(pilot: Pilot[Any]) -> SubmitScreen:
    await _first_round(pilot)
    screen = SubmitScreen()
    await pilot.app.push_screen(screen)
    await until(
        pilot, lambda: screen.values().image == "busybox:latest", 20, "the nodes' images", 0.05
    )
    return screen


def test_job_sharded_at_the_verdict_gate(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _open_job(pilot, "sharded", fake)

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_job_at_the_publish_gate(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        screen = await _open_job(pilot, "step", fake)
        # enter opens the verdict gate: the view follows the job to its publish gate
        await pilot.press("enter")
        await until(
            pilot,
            lambda: screen.gates and screen.gates[0].name == "publish",
            20,
            "the publish gate",
            0.05,
        )
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_job_whose_runs_disagreed(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        fake.stage[job_id("split")] = 1  # ended error
        await _open_job(pilot, "split", fake)

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_job_sharded_completed_filtered(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        fake.stage[job_id("sharded")] = 2  # completed
        await _open_job(pilot, "sharded", fake)
        await pilot.press("slash", *"shard 1", "enter")

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_job_escalated_then_completed(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _open_job(pilot, "escalated", fake)

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_job_whose_verdict_asks_for_more_runs(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        fake.stage[job_id("checked")] = 1  # its spot check disagreed: 1 more run asked
        await _open_job(pilot, "checked", fake)
        await pilot.press("ctrl+end")  # the timeline's last events: the spot check, the gate
        await pilot.pause()

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_submit_form(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _open_form(pilot)
        await pilot.pause()

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)


def test_submit_form_refuses_a_bad_value(snap_compare: Any, fake: FakeJobsCluster) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        screen = await _open_form(pilot)
        await pilot.press(*"echo hello", "tab", "tab", *"4", "ctrl+s")
        await until(pilot, screen.errors, 20, "the refusal under its field", 0.05)
        await pilot.pause()
        assert fake.submitted == []

    assert snap_compare(_app(fake), terminal_size=SIZE, run_before=before)
