"""The job view and the submit form driven by the pilot over the replayed cluster
(``tui_fake_jobs``): which node they ask, what the keys do, what a refusal shows.
The real-cluster versions are in ``tests/integration/test_tui_job_submit.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui_pilot import screen_shown, until, warmed_up
from tests.unit.tui_fake_jobs import (
    FakeJobsCluster,
    fake_source,
    job_id,
    serve_job_screens,
)
from tui.app import BacalhauApp
from tui.screens.job import JobScreen
from tui.screens.submit import SubmitScreen
from tui.widgets.gate_panel import GatePanel
from tui.widgets.timeline import TimelineTable

pytestmark = pytest.mark.timeout(60)
WAIT_S = 10.0  # for what the app shows next


class NotingApp(BacalhauApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.notes.append((message, str(kwargs.get("severity", "information"))))
        super().notify(message, *args, **kwargs)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJobsCluster]:
    """The fake cluster; the screens' own API clients reach it too."""
    cluster = FakeJobsCluster()
    serve_job_screens(cluster, monkeypatch)
    yield cluster


def _app(fake: FakeJobsCluster) -> NotingApp:
    source = fake_source(fake)
    return NotingApp(source, refresh=60.0)


async def _started(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, BacalhauApp)
    await until(
        pilot,
        lambda: app.snapshot is not None and warmed_up(app),
        WAIT_S,
        "a first poll, every view mounted",
        0.02,
    )


async def _open(pilot: Pilot[Any], job: str, **kwargs: Any) -> JobScreen:
    await _started(pilot)
    screen = JobScreen(job_id(job), **kwargs)
    await pilot.app.push_screen(screen)
    await until(
        pilot, lambda: screen.query_one(TimelineTable).row_count, WAIT_S, f"{job}'s timeline", 0.02
    )
    return screen


def test_the_requester_is_found_by_asking_the_nodes(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        app = _app(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "simple")
            asked = [r for r in fake.requests if "/api/v1/jobs/" in r]
            # every node asked once (node-1 and node-2 do not know it), then node-0 followed
            assert sorted(asked[:3]) == [
                f"node{i}.test/api/v1/jobs/{job_id('simple')}" for i in range(3)
            ]
            assert asked[3].startswith("node0.test")
            assert "completed" in screen.query_one("#job-header").text
            assert not screen.query_one(GatePanel).display

    asyncio.run(go())


def test_the_gate_key_steps_and_a_409_is_a_notice(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        app = _app(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "step", requester=fake.targets()[0].peer_id)
            # the requester was named: nobody else is asked
            assert not [
                r for r in fake.requests if r.startswith(("node1", "node2")) and "jobs/" in r
            ]
            panel = screen.query_one(GatePanel)
            assert panel.display and "verdict" in panel.text and "3 votes" in panel.text

            # enter in the filter line closes the filter; it does not open the gate
            await pilot.press("slash", *"node-1", "enter")
            assert fake.steps == []
            assert screen.query_one(TimelineTable).filter_text == "node-1"

            await pilot.press("enter")
            await until(
                pilot,
                lambda: [g.name for g in screen.gates] == ["publish"],
                WAIT_S,
                "the publish gate",
                0.02,
            )
            assert "publish bafy" in panel.text
            await pilot.press("x")
            await until(
                pilot,
                lambda: not screen.gates and not panel.display,
                WAIT_S,
                "no gate left",
                0.02,
            )
            assert fake.steps == [job_id("step")] * 2
            assert [m for m, _ in app.notes if m.startswith("opened")] == [
                "opened the verdict gate of shard 0",
                "opened the publish gate of shard 0",
            ]
            # no gate: the key is off; asked anyway, the 409 is a warning
            assert screen.check_action("open_gate", ()) is None
            screen.action_open_gate()
            await until(
                pilot,
                lambda: any("not waiting" in m for m, _ in app.notes),
                WAIT_S,
                "the 409 notice",
                0.02,
            )
            assert "warning" in {s for m, s in app.notes if "not waiting" in m}

    asyncio.run(go())


def test_a_verdict_that_asks_for_more_runs_is_stepped_through(fake: FakeJobsCluster) -> None:
    """The hand-made spot check of ``tui_fake_checks``: each verdict gate says how many
    more runs it asks for and why, and the key's label says what opening it does."""

    async def go() -> None:
        app = _app(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "checked", requester=fake.targets()[0].peer_id)
            panel = screen.query_one(GatePanel)
            assert panel.display and [g.more for g in screen.gates] == [1]
            assert "enter opens it: run the shard on 1 more node" in panel.text
            assert "asks for 1 more run on fresh nodes before its verdict: a spot check" in (
                panel.text
            )
            await pilot.press("enter")
            await until(
                pilot,
                lambda: [g.more for g in screen.gates] == [1] and screen.gates[0].groups[1:],
                WAIT_S,
                "the second verdict gate",
                0.02,
            )
            assert "asks for 1 more run" in panel.text and "2 different results" in panel.text
            timeline = screen.query_one(TimelineTable)
            kinds = [r.kind for r in timeline.records.values()]
            assert "spot_check" in kinds and "escalation_accepted" in kinds
            await pilot.press("enter")
            await until(
                pilot, lambda: not panel.display, WAIT_S, "the job's end (no node left)", 0.02
            )
            header = screen.query_one("#job-header").text
            assert "error" in header and "settling it needs 1 more run(s)" in header
            assert fake.steps == [job_id("checked")] * 2

    asyncio.run(go())


def test_the_cancel_key_cancels_on_the_requester_and_a_409_is_a_notice(
    fake: FakeJobsCluster,
) -> None:
    async def go() -> None:
        app = _app(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            await _open(pilot, "step", requester=fake.targets()[0].peer_id)
            await pilot.press("c")
            await until(pilot, lambda: fake.cancels == [job_id("step")], WAIT_S, "the cancel", 0.02)
            await until(
                pilot,
                lambda: any("cancelled" in m for m, _ in app.notes),
                WAIT_S,
                "the cancelled notice",
                0.02,
            )
            await pilot.press("c")  # cancelled already: the node's 409, as a warning
            await until(
                pilot,
                lambda: any("already ended" in m for m, _ in app.notes),
                WAIT_S,
                "the 409 notice",
                0.02,
            )
            assert "warning" in {s for m, s in app.notes if "already ended" in m}
            assert fake.cancels == [job_id("step")]

    asyncio.run(go())


def test_a_job_nobody_knows_says_so(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        app = _app(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            await _started(pilot)
            screen = JobScreen("00000000-0000-0000-0000-000000000000")
            await app.push_screen(screen)
            await until(
                pilot,
                lambda: "no node of the cluster knows" in screen.query_one("#job-header").text,
                WAIT_S,
                "the header to say nobody knows the job",
                0.02,
            )
            assert screen.describe is None

    asyncio.run(go())


def test_a_refusal_from_the_node_is_shown_under_its_field(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        app = _app(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            await _started(pilot)
            await pilot.press("s")
            form = await screen_shown(pilot, SubmitScreen, WAIT_S, "the form", 0.02)
            await until(
                pilot,
                lambda: form.values().image == "busybox:latest",
                WAIT_S,
                "the nodes' images",
                0.02,
            )
            fake.refuse = (
                400,
                {"error": "invalid_spec", "message": "nobody holds it", "field": "inputs[1].cid"},
            )
            cid = "bafybeiar63jncc22ktivr2vc6uvlrxmvl4exk7ogbfogbz66pbkeyiswpe"
            form.query_one("#inputs").value = f"{cid}:/inputs/a {cid}:/inputs/b"  # type: ignore[attr-defined]
            await pilot.press(*"echo hi", "ctrl+s")
            errors = await until(pilot, form.errors, WAIT_S, "the refusal", 0.02)
            assert errors == {"inputs": f"input 2 ({cid}:/inputs/b): nobody holds it"}
            assert fake.submitted == []

            # accepted: a notice with the id, the form closes and the job view opens
            fake.refuse = None
            form.query_one("#inputs").value = ""  # type: ignore[attr-defined]
            await pilot.press("ctrl+s")
            screen = await screen_shown(pilot, JobScreen, WAIT_S, "the job view", 0.02)
            assert screen.job_id == job_id("simple")
            assert fake.submitted[0]["command"] == ["echo", "hi"]
            assert any(job_id("simple") in m for m, _ in app.notes)
            assert not form.is_attached

    asyncio.run(go())
