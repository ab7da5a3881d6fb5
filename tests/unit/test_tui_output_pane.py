"""The job view's output pane driven by the pilot over the replayed cluster
(``tui_fake_jobs``), whose requester serves each job's output stream from an
:class:`~tests.unit.tui_fake_jobs.OutputFeed` the test feeds: lines arrive while the
job runs, labels appear once the job runs in more than one place, lost lines and a
failing stream are one line each, ``p`` pauses and resumes, and the worker stops at
the end record or with the screen. The real-cluster version is in
``tests/integration/test_tui_job_output.py``. Every wait has a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerState

from tests.tui_pilot import SIZE, until, warmed_up
from tests.unit.tui_fake import CLUSTER
from tests.unit.tui_fake_jobs import (
    FakeJobsCluster,
    OutputFeed,
    fake_source,
    job_id,
    serve_job_screens,
)
from tui.app import BacalhauApp
from tui.screens import job as job_screen
from tui.screens.help import key_rows
from tui.screens.job import JobScreen
from tui.widgets.output_pane import OutputPane

pytestmark = pytest.mark.timeout(60)
WAIT_S = 10.0  # for what the app shows next
PEERS = [node["peer_id"] for node in CLUSTER["nodes"]]  # node-0, node-1, node-2


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJobsCluster]:
    """The fake cluster; the job view's own API clients reach it too. A failed
    output stream is followed again after 0.2 s rather than 5 s."""
    cluster = FakeJobsCluster()
    serve_job_screens(cluster, monkeypatch)
    monkeypatch.setattr(job_screen, "OUTPUT_RETRY_S", 0.2)
    yield cluster


def _feed(fake: FakeJobsCluster, job: str) -> OutputFeed:
    """A feed of no records yet for ``job``, which the view follows when opened."""
    feed = fake.outputs[job_id(job)] = OutputFeed()
    return feed


async def _open(pilot: Pilot[Any], job: str) -> tuple[JobScreen, OutputPane]:
    app = pilot.app
    assert isinstance(app, BacalhauApp)
    await until(
        pilot, lambda: app.snapshot is not None and warmed_up(app), WAIT_S, "a first poll", 0.02
    )
    screen = JobScreen(job_id(job))
    await app.push_screen(screen)
    await until(pilot, lambda: screen.output_worker, WAIT_S, f"{job}'s output followed", 0.02)
    return screen, screen.query_one(OutputPane)


async def _shown(pilot: Pilot[Any], pane: OutputPane, count: int, what: str) -> list[str]:
    """The pane's lines once it shows ``count`` of them (and nothing waits)."""
    return await until(
        pilot,
        lambda: len(pane.shown) == count and not pane.waiting and pane.shown,
        WAIT_S,
        what,
        0.02,
    )


def _colours(pane: OutputPane, index: int) -> set[str]:
    """The colour names of line ``index``'s text."""
    return {
        seg.style.color.name
        for seg in pane.lines[index]
        if seg.style is not None and seg.style.color is not None
    }


def test_lines_arrive_while_the_job_runs_unlabelled_in_one_place(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        feed = _feed(fake, "simple")  # concurrency 1, one shard
        feed.line(PEERS[2], "tick 1")
        feed.line(PEERS[2], "oops \x1b[31mred\x1b[0m\r", stream="stderr")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            screen, pane = await _open(pilot, "simple")
            assert await _shown(pilot, pane, 2, "the first lines") == ["tick 1", "oops red"]
            assert "red" in _colours(pane, 1) and "red" not in _colours(pane, 0)  # stderr
            feed.line(PEERS[2], "tick 2")
            assert (await _shown(pilot, pane, 3, "a later line"))[-1] == "tick 2"
            assert pane.border_title == "Output 3 lines"
            worker = screen.output_worker
            assert worker is not None and worker.state == WorkerState.RUNNING
            assert feed.followed == 1
            # the key is listed in the help and in the key bar
            assert ("p", "Pause") in key_rows(screen)

    asyncio.run(go())


def test_lines_are_labelled_when_the_job_runs_in_more_than_one_place(
    fake: FakeJobsCluster,
) -> None:
    async def go() -> None:
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            # concurrency 3: the captured stdout of each node, labelled with its name
            _screen, pane = await _open(pilot, "step")
            shown = await _shown(pilot, pane, 3, "the three nodes' lines")
            assert sorted(shown) == [f"node-{i} │ hello" for i in range(3)]
            await pilot.press("escape")

            # 3 shards of concurrency 2: node#shard
            _screen, pane = await _open(pilot, "sharded")
            shown = await _shown(pilot, pane, 18, "the six runs' lines")
            assert shown[0] == "node-1#0 │        50 /inputs/b1.txt"
            assert {line.split(" │ ")[0] for line in shown} == {
                "node-0#0",
                "node-1#0",
                "node-1#1",
                "node-2#1",
                "node-2#2",
                "node-0#2",
            }

    asyncio.run(go())


def test_a_second_place_the_spec_did_not_announce_labels_lines_from_then_on(
    fake: FakeJobsCluster,
) -> None:
    async def go() -> None:
        feed = _feed(fake, "simple")
        feed.line(PEERS[2], "first run")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            _screen, pane = await _open(pilot, "simple")
            await _shown(pilot, pane, 1, "the first line")
            feed.line(PEERS[1], "a rerun elsewhere")
            shown = await _shown(pilot, pane, 2, "the rerun's line")
            assert shown == ["first run", "node-1 │ a rerun elsewhere"]

    asyncio.run(go())


def test_lost_lines_are_one_line(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        feed = _feed(fake, "simple")
        feed.line(PEERS[2], "before")
        feed.lost(PEERS[2], 1234)
        feed.line(PEERS[2], "after")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            _screen, pane = await _open(pilot, "simple")
            shown = await _shown(pilot, pane, 3, "the lines and the loss")
            assert shown == ["before", "… 1234 line(s) lost", "after"]
            assert "yellow" in _colours(pane, 1)
            assert pane.border_title == "Output 2 lines · 1234 lost"

    asyncio.run(go())


def test_pause_stops_scrolling_and_unpause_shows_what_waited(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        feed = _feed(fake, "simple")
        for i in range(40):
            feed.line(PEERS[2], f"line {i}")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            _screen, pane = await _open(pilot, "simple")
            await _shown(pilot, pane, 40, "40 lines")
            # more lines than the pane is high: it follows the newest
            await until(
                pilot,
                lambda: pane.max_scroll_y > 0 and pane.scroll_y == pane.max_scroll_y,
                WAIT_S,
                "the pane at its end",
                0.02,
            )

            await pilot.press("p")
            assert pane.paused and pane.has_class("-paused")
            assert pane.border_title == "Output 40 lines (paused: 0 new)"
            pane.scroll_to(y=3, animate=False, immediate=True)  # reading something above
            for i in range(40, 45):
                feed.line(PEERS[2], f"line {i}")
            await until(pilot, lambda: pane.waiting == 5, WAIT_S, "5 lines waiting", 0.02)
            await until(
                pilot,
                lambda: pane.border_title == "Output 45 lines (paused: 5 new)",
                WAIT_S,
                "the title counting them",
                0.02,
            )
            await pilot.pause()
            assert len(pane.shown) == 40 and pane.shown[-1] == "line 39"
            assert pane.scroll_y == 3  # nothing scrolled

            await pilot.press("p")
            assert not pane.paused and not pane.has_class("-paused")
            shown = await _shown(pilot, pane, 45, "the waiting lines")
            assert shown[-1] == "line 44"
            await until(
                pilot,
                lambda: pane.scroll_y == pane.max_scroll_y > 3,
                WAIT_S,
                "the pane back at its end",
                0.02,
            )
            assert pane.border_title == "Output 45 lines"

    asyncio.run(go())


def test_the_end_record_stops_the_worker(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        feed = _feed(fake, "simple")
        feed.line(PEERS[2], "tick 1")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            screen, pane = await _open(pilot, "simple")
            await _shown(pilot, pane, 1, "the first line")
            worker = screen.output_worker
            assert worker is not None and worker.state == WorkerState.RUNNING
            feed.line(PEERS[2], "tick 2")
            feed.end("completed")
            await until(pilot, lambda: worker.is_finished, WAIT_S, "the worker done", 0.02)
            assert worker.state == WorkerState.SUCCESS
            assert pane.shown == ["tick 1", "tick 2"]
            assert pane.ended == "completed"
            assert pane.border_title == "Output 2 lines · the job ended (completed)"
            assert feed.followed == 1  # not asked again

    asyncio.run(go())


def test_a_job_that_printed_nothing_says_so(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        _feed(fake, "simple").end("completed")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            screen, pane = await _open(pilot, "simple")
            assert await _shown(pilot, pane, 1, "the note") == ["(no output)"]
            worker = screen.output_worker
            assert worker is not None
            await until(pilot, lambda: worker.is_finished, WAIT_S, "the worker done", 0.02)

    asyncio.run(go())


def test_a_refused_stream_is_one_line_and_followed_again(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        feed = _feed(fake, "step")  # at its verdict gate: not ended
        feed.refusals = [
            (503, {"error": "unavailable", "message": "the requester is busy"}),
            (503, {"error": "unavailable", "message": "the requester is busy"}),
        ]
        feed.line(PEERS[0], "hello")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            _screen, pane = await _open(pilot, "step")
            shown = await _shown(pilot, pane, 2, "the refusal, then the line")
            # the same refusal twice in a row: one line
            assert shown == [
                "the requester is busy; following again in 0.2 s",
                "node-0 │ hello",
            ]
            assert "yellow" in _colours(pane, 0)
            assert feed.followed == 3

    asyncio.run(go())


def test_a_stream_that_breaks_is_followed_again_without_repeating_lines(
    fake: FakeJobsCluster,
) -> None:
    async def go() -> None:
        feed = _feed(fake, "step")
        feed.line(PEERS[0], "one")
        feed.line(PEERS[1], "two")
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            screen, pane = await _open(pilot, "step")
            await _shown(pilot, pane, 2, "the first lines")
            feed.hang_up()
            await until(pilot, lambda: feed.followed == 2, WAIT_S, "the stream asked again", 0.02)
            feed.line(PEERS[2], "three")
            shown = await _shown(pilot, pane, 4, "the line after the break")
            # the new stream starts from the first line again: nothing shown twice
            assert shown == [
                "node-0 │ one",
                "node-1 │ two",
                "the output stream stopped before its end record; following again in 0.2 s",
                "node-2 │ three",
            ]
            worker = screen.output_worker
            assert worker is not None and worker.state == WorkerState.RUNNING

    asyncio.run(go())


def test_leaving_the_view_stops_the_worker(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            screen, pane = await _open(pilot, "step")  # the captured lines, then held open
            await _shown(pilot, pane, 3, "the captured lines")
            worker = screen.output_worker
            assert worker is not None and worker.state == WorkerState.RUNNING
            await pilot.press("escape")
            await until(pilot, lambda: worker.is_finished, WAIT_S, "the worker gone", 0.02)
            assert worker.state == WorkerState.CANCELLED
            assert fake.outputs[job_id("step")].followed == 1

    asyncio.run(go())


def test_output_no_longer_kept_is_one_line_and_not_asked_again(fake: FakeJobsCluster) -> None:
    async def go() -> None:
        feed = _feed(fake, "step")  # the view's answer says it runs; the node knows better
        gone = "job ended (completed) and its live output is no longer kept"
        feed.refusals = [(404, {"error": "output_gone", "message": gone, "field": "job_id"})]
        async with BacalhauApp(fake_source(fake), refresh=60.0).run_test(size=SIZE) as pilot:
            screen, pane = await _open(pilot, "step")
            assert await _shown(pilot, pane, 1, "the refusal") == [gone]
            worker = screen.output_worker
            assert worker is not None
            await until(pilot, lambda: worker.is_finished, WAIT_S, "the worker done", 0.02)
            assert worker.state == WorkerState.SUCCESS
            assert feed.followed == 1

    asyncio.run(go())
