"""The job view's output pane driven by Textual's pilot against a real 3-node devstack:
a Docker job's lines reach the pane while it runs, the later ones follow, and the
pane's worker stops once the stream's end record says the job ended.

The real app (``BacalhauApp`` over a ``ClusterSource`` on the cluster's state
directory) runs at 120x40 and every wait is a deadline on what the screen shows;
nothing here sleeps to synchronise. The fake-cluster versions are in
``tests/unit/test_tui_output_pane.py``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from textual.worker import WorkerState

from tests.conftest import Devstack
from tests.tui_pilot import SIZE, run, until, warmed_up
from tui.app import BacalhauApp
from tui.screens.job import JobScreen
from tui.source import ClusterSource
from tui.widgets.output_pane import OutputPane

pytestmark = [pytest.mark.slow]

TERMINAL = ("completed", "error", "cancelled")
TICKS = [f"tick {i}" for i in range(1, 7)]


@pytest.mark.timeout(300)
def test_a_running_jobs_lines_reach_the_output_pane_before_it_ends(cluster3: Devstack) -> None:
    async def go() -> None:
        app = BacalhauApp(ClusterSource(cluster3.state_dir), refresh=0.5)
        async with (
            app.run_test(size=SIZE) as pilot,
            httpx.AsyncClient(base_url=cluster3.api(0), timeout=30) as http,
        ):
            await until(
                pilot, lambda: app.snapshot is not None and warmed_up(app), 30, "the app ready"
            )
            answer = await http.post(
                "/api/v1/jobs",
                json={
                    "image": "busybox:latest",
                    "command": ["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 1; done"],
                    "timeout": 120,
                },
            )
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]

            async def state() -> Any:
                found = await http.get(f"/api/v1/jobs/{job_id}")
                assert found.status_code == 200, found.text
                return found.json()["job"]["state"]

            app.open_job(job_id)
            screen = await until(
                pilot, lambda: isinstance(app.screen, JobScreen) and app.screen, 10, "the job view"
            )
            pane = await until(
                pilot, lambda: next(iter(screen.query(OutputPane)), None), 10, "the output pane"
            )

            # The first line, while the job still runs (asked the moment it is seen).
            await until(pilot, lambda: "tick 1" in pane.shown, 120, "tick 1 in the output pane")
            state_at_first = await state()
            print(f"\njob {job_id}: {state_at_first} when tick 1 was shown")
            assert state_at_first not in TERMINAL, "tick 1 was shown only once the job ended"
            assert pane.ended is None

            # The later lines follow, in order and once each, then the end record.
            await until(pilot, lambda: "tick 6" in pane.shown, 60, "tick 6 in the output pane")
            await until(pilot, lambda: pane.ended, 60, "the end record")
            assert pane.shown == TICKS
            assert pane.ended == "completed" and await state() == "completed"
            assert pane.border_title == "Output 6 lines · the job ended (completed)"
            worker = screen.output_worker
            assert worker is not None
            await until(pilot, lambda: worker.is_finished, 10, "the output worker done")
            assert worker.state == WorkerState.SUCCESS

    run(go)
