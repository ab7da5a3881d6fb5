"""The submit form and the job view driven by Textual's pilot against a real 3-node
devstack: a job submitted through the form completes in the jobs view; a step-mode
job is stepped through both gates from its view and published; bad values (the
form's own reading, the API's rules, an input CID only the requester can refuse) are
shown under their fields and submit nothing.

Each test runs the real app (``BacalhauApp`` over a ``ClusterSource`` on the
cluster's state directory) at 120x40 and waits on what the screen shows, with
deadlines; nothing here sleeps to synchronise.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Switch

from node.content.importer import add_bytes
from tests.conftest import Devstack, get_json
from tests.tui_pilot import SIZE, run, until, warmed_up
from tui.app import BacalhauApp
from tui.screens.job import JobScreen
from tui.screens.jobs import JobsScreen
from tui.screens.submit import SubmitScreen
from tui.source import ClusterSource
from tui.widgets.gate_panel import GatePanel
from tui.widgets.job_panels import ResultsPanel
from tui.widgets.job_table import JobTable
from tui.widgets.run_table import RunTable

pytestmark = [pytest.mark.slow]


class RecordingApp(BacalhauApp):
    """The app, remembering every notification it showed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.notes.append((message, str(kwargs.get("severity", "information"))))
        super().notify(message, *args, **kwargs)


def _app(stack: Devstack) -> RecordingApp:
    return RecordingApp(ClusterSource(stack.state_dir), refresh=0.5)


def _ready(app: BacalhauApp) -> bool:
    """The first poll is in and every view is mounted (a screen pushed before then
    could land on another view's stack)."""
    return app.snapshot is not None and warmed_up(app)


def _requested(stack: Devstack, node: int = 0) -> list[str]:
    """The ids of the jobs node ``node`` requested."""
    jobs = get_json(f"{stack.api(node)}/api/v1/jobs?role=requester&limit=1000")["jobs"]
    return [j["job"]["id"] for j in jobs]


async def _open_form(pilot: Pilot[Any]) -> SubmitScreen:
    app = pilot.app
    assert isinstance(app, BacalhauApp)
    await pilot.press("s")
    form = await until(
        pilot, lambda: isinstance(app.screen, SubmitScreen) and app.screen, 10, "the form"
    )
    await until(
        pilot, lambda: form.values().image == "busybox:latest", 20, "the images the nodes have"
    )
    return form


def _set(form: SubmitScreen, **values: str) -> None:
    """Type these values into the form's text fields (replacing what they hold)."""
    for name, value in values.items():
        form.query_one(f"#{name}", Input).value = value


def _error(form: SubmitScreen, field: str) -> dict[str, str] | None:
    """The form's errors once ``field`` has one (None until then)."""
    errors = form.errors()
    return errors if field in errors else None


def _job_screen(app: BacalhauApp) -> JobScreen | None:
    return app.screen if isinstance(app.screen, JobScreen) else None


@pytest.mark.timeout(240)
def test_a_job_submitted_through_the_form_completes(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: _ready(app), 30, "the app ready")
            await pilot.press("j")
            assert isinstance(app.screen, JobsScreen)
            form = await _open_form(pilot)
            await pilot.press(*"sh -c 'echo \"from the form\"'")
            await pilot.press("ctrl+s")

            screen = await until(pilot, lambda: _job_screen(app), 60, "the job view")
            job_id = screen.job_id
            assert any(job_id in message for message, _ in app.notes), app.notes
            assert job_id in _requested(cluster3, 0)  # node 0: the form's default
            assert not form.is_attached
            await until(
                pilot,
                lambda: screen.describe and screen.describe["job"]["state"] == "completed",
                120,
                "the job completed in its view",
            )
            results = screen.query_one(ResultsPanel).text
            assert "from the form" in results and "bafy" in results, results
            runs = screen.query_one(RunTable)
            assert [runs.cell_text(k, "state") for k in runs.visible_keys] == ["published"]

            # back to the jobs view: the job is listed, completed, on node-0
            await pilot.press("escape")
            assert isinstance(app.screen, JobsScreen)
            table = app.screen.query_one(JobTable)
            await until(
                pilot,
                lambda: job_id in table.records and table.cell_text(job_id, "state") == "completed",
                60,
                f"job {job_id} completed in the jobs view",
            )
            assert table.cell_text(job_id, "requester") == "node-0"

    run(go)


@pytest.mark.timeout(240)
def test_a_step_mode_job_is_stepped_through_both_gates(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: _ready(app), 30, "the app ready")
            form = await _open_form(pilot)
            # picks in the form's choices (as a click in their lists would set them)
            form.query_one("#node", Select).value = 1
            form.query_one("#engine", Select).value = "noop"
            form.query_one("#verifier", Select).value = "deterministic"
            form.query_one("#step", Switch).value = True
            form.query_one("#concurrency").focus()
            await pilot.press("3", "tab", "3", "ctrl+s")

            screen = await until(pilot, lambda: _job_screen(app), 60, "the job view")
            job_id = screen.job_id
            assert job_id in _requested(cluster3, 1)
            panel = screen.query_one(GatePanel)

            # the verdict gate: 3 proposals of one CID, all accepted
            await until(
                pilot,
                lambda: [g.name for g in screen.gates] == ["verdict"] and panel.display,
                90,
                "the verdict gate",
            )
            spec = screen.describe["job"]["job"]["spec"] if screen.describe else None
            assert spec and spec["engine"] == "noop" and spec["deal"]["concurrency"] == 3
            (gate,) = screen.gates
            assert len(gate.groups) == 1 and gate.groups[0].votes == 3 and gate.groups[0].accepted
            cid = gate.groups[0].cid
            assert cid in panel.text and "3 votes" in panel.text
            for name in ("node-0", "node-1", "node-2"):
                assert name in panel.text
            await pilot.press("enter")

            # the publish gate: the same CID, from the three nodes
            await until(
                pilot,
                lambda: [g.name for g in screen.gates] == ["publish"],
                60,
                "the publish gate",
            )
            assert screen.gates[0].to_publish == (cid,)
            assert f"publish {cid}" in panel.text
            await pilot.press("x")

            await until(
                pilot,
                lambda: screen.describe and screen.describe["job"]["state"] == "completed",
                60,
                "the job published",
            )
            await until(pilot, lambda: not panel.display, 10, "the gate panel hidden")
            assert screen.describe is not None
            assert screen.describe["shards"][0]["cid"] == cid
            assert cid in screen.query_one(ResultsPanel).text
            runs = screen.query_one(RunTable)
            assert (
                sorted(runs.cell_text(k, "state") for k in runs.visible_keys) == ["published"] * 3
            )
            steps = [message for message, _ in app.notes if "opened the" in message]
            assert steps == [
                "opened the verdict gate of shard 0",
                "opened the publish gate of shard 0",
            ]

            # no gate now: the key is disabled; asked anyway, the node's 409 is a notice
            assert screen.check_action("open_gate", ()) is None
            screen.action_open_gate()
            await until(
                pilot,
                lambda: any("not waiting at a gate" in m for m, _ in app.notes),
                10,
                "the 409 notified",
            )
            assert any(sev == "warning" for m, sev in app.notes if "not waiting at a gate" in m)

    run(go)


@pytest.mark.timeout(240)
def test_bad_values_are_shown_under_their_fields_and_submit_nothing(cluster3: Devstack) -> None:
    async def go() -> None:
        app = _app(cluster3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: _ready(app), 30, "the app ready")
            before = _requested(cluster3, 0)
            form = await _open_form(pilot)

            # an empty command
            await pilot.press("ctrl+s")
            errors = await until(pilot, form.errors, 5, "an error")
            assert list(errors) == ["command"] and "needs a command" in errors["command"]
            assert form.focused is form.query_one("#command")

            # confidence above concurrency
            await pilot.press(*"echo never", "tab", "2", "tab", "3", "ctrl+s")
            errors = await until(pilot, lambda: "confidence" in form.errors(), 5, "the error")
            errors = form.errors()
            assert list(errors) == ["confidence"], errors
            assert "between 0 and deal.concurrency" in errors["confidence"]

            # a concurrency above the network: the form knows the cluster's 3 nodes
            _set(form, confidence="0", concurrency="5")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "concurrency" in form.errors(), 5, "the error")
            assert "only 3 nodes" in form.errors()["concurrency"]

            # an input CID nobody holds: only the requester can tell (a 400 naming it)
            nobody = add_bytes(b"no node of this cluster holds this tui test input")[0]
            _set(form, concurrency="1", inputs=nobody)
            await pilot.press("ctrl+s")
            errors = await until(pilot, lambda: _error(form, "inputs"), 60, "the node's refusal")
            assert nobody in errors["inputs"] and list(errors) == ["inputs"]
            assert form.query_one("#inputs").has_focus

            # a glob that matches nothing in an input the requester holds
            async with httpx.AsyncClient(base_url=cluster3.api(0), timeout=30) as http:
                answer = await http.post(
                    "/api/v1/jobs", json={"image": "busybox", "command": ["echo", "seed"]}
                )
                seed = answer.json()["id"]
            published = await until(
                pilot,
                lambda: get_json(f"{cluster3.api(0)}/api/v1/jobs/{seed}")["shards"][0]["cid"],
                60,
                f"the seed job {seed} to publish",
                0.2,
            )
            before.append(seed)
            _set(form, inputs=published, glob="/inputs/*.nothing")
            await pilot.press("ctrl+s")
            errors = await until(pilot, lambda: _error(form, "glob"), 60, "the node's refusal")
            assert "matches no input" in errors["glob"] and list(errors) == ["glob"]

            assert isinstance(app.screen, SubmitScreen)
            assert sorted(_requested(cluster3, 0)) == sorted(before)
            await pilot.press("escape")
            assert not isinstance(app.screen, SubmitScreen)

    run(go)
