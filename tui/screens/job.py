"""The job view: one job's story, its gates and its results, refreshed live.

This module owns :class:`JobScreen` (``JobScreen(job_id)``, pushed by
:meth:`tui.app.BacalhauApp.open_job` when a job is picked in the jobs view, and by the
submit form once a job is accepted). It asks the job's requester for
``GET /api/v1/jobs/{id}`` every refresh interval, in a worker that runs while the
screen is shown; the requester is the one the jobs list names, else whichever node
knows the job says who it is. What it shows is computed by :mod:`tui.jobview`:

- a header: the job, its state, its spec, its age and total;
- the gates a step-mode job waits at and what is behind them (proposals and their
  hashes, votes, accepted and rejected nodes, or the runs on fresh nodes a verdict
  asks for first and why; the CID about to be published), with
  ``enter`` / ``x`` to open them (``POST /api/v1/jobs/{id}/step``; a 409 is a
  notification);
- its runs, one row per (shard, node), with the latency of each phase;
- its timeline, every event with its phase latency (``/`` filters it), escalations
  and spot checks with the runs they add and why;
- its live output (:class:`~tui.widgets.output_pane.OutputPane`): every line its runs
  print, as the requester streams it (``GET /api/v1/jobs/{id}/logs?follow=true``, in a
  second worker started with the first answer), labelled with its node (and shard)
  when the job runs in more than one place; ``p`` pauses and resumes it;
- per shard, the CID published, who holds it, and a stdout preview.

Widgets are built once and updated in place: tables change only the cells whose text
changed, panels repaint only when their text did, and an unchanged answer changes
nothing. Polling stops once the job has ended and its answer stopped changing; the
output worker once the stream's end record came (the job ended), or when the screen
goes. A stream that fails or breaks before the job ended is one line in the pane and
is followed again after :data:`OUTPUT_RETRY_S` (no line is shown twice).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker

from devstack.client.aio import AsyncNodeClient
from devstack.client.calls import DEFAULT_TIMEOUT_S, NodeApiError
from tui.format import short_job_id
from tui.host import TuiHost, host_of
from tui.jobview import (
    GateSummary,
    gate_summaries,
    is_step,
    job_summary,
    name_of,
    run_phases,
    shard_phases,
    shard_results,
    timeline,
)
from tui.source import NodeTarget
from tui.waiting import wait_for_wake
from tui.widgets.filter_input import FilterInput
from tui.widgets.gate_panel import GatePanel
from tui.widgets.job_panels import JobHeader, ResultsPanel, header_text, results_text
from tui.widgets.key_bar import KeyBar
from tui.widgets.output_pane import MAX_LINES as OUTPUT_LINES
from tui.widgets.output_pane import OutputPane
from tui.widgets.run_table import RUN_COLUMNS, RunTable
from tui.widgets.timeline import TIMELINE_COLUMNS, TimelineTable

#: Seconds a node has to answer "do you know this job?" while the requester is sought.
LOCATE_TIMEOUT_S = 3.0
#: Nodes asked at once while the requester is sought.
LOCATE_CONCURRENCY = 8
#: Seconds between two searches for a requester while no node knows the job.
LOCATE_RETRY_S = 5.0
#: Seconds before the output stream is followed again after it failed or broke.
OUTPUT_RETRY_S = 5.0
GATE_KEY = "enter"


def connect(api: str, timeout: float = DEFAULT_TIMEOUT_S) -> AsyncNodeClient:
    """A client of the node at ``api``, for the detail screens and the form (the one
    place tests replace to reach a fake cluster)."""
    return AsyncNodeClient(api, timeout=timeout)


class JobScreen(Screen[None]):
    """One job: header, gates, runs, timeline, live output and results, refreshed live."""

    CSS_PATH = Path(__file__).with_name("job.tcss")
    AUTO_FOCUS = "TimelineTable"

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: enter would otherwise select a row of the focused table. When the
        # job waits at no gate, check_action lets enter through to the table.
        Binding("enter,x", "open_gate", "Open gate", priority=True),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("p", "toggle_pause", "Pause", tooltip="Pause the output pane, or resume it"),
        Binding("tab", "app.focus_next", "Next table", show=False),
    ]

    HELP_TITLE = "Job"
    HELP_INTRO = (
        "One job as its requester tells it, refreshed every interval. The header says"
        " what it runs and where it stands; a step-mode job that waits at a gate shows"
        " what is behind it (proposals grouped by result CID with their votes, who is"
        " accepted and rejected, or how many more runs on fresh nodes the verdict asks"
        " for and why; then the CID about to be published), and enter or x"
        " opens it; c cancels the job. Runs: one row per shard and node with each"
        " phase's latency (⏸: a"
        " gate held it). Timeline: every event with the latency of the phase it ends"
        " (escalated and spot_check: the runs added on fresh nodes, the shard's extra"
        " runs of the deal's most, and why); / filters it (e.g. a node's name,"
        " `shard 2`, `verdict`). Output: what the"
        " job prints, live (stderr in red, `… N line(s) lost` where lines were lost),"
        " each line labelled with its node (node#shard for a sharded job) when it"
        f" runs in more than one place; the last {OUTPUT_LINES} lines are kept. p pauses"
        " it: new lines wait, counted in its title, and p again shows them. Results:"
        " each shard's CID, who holds it, its phases (re-runs, extra runs) and its"
        " stdout. tab moves between the tables"
        " and the output."
    )
    HELP_COLUMNS = (
        *RUN_COLUMNS,
        *(c for c in TIMELINE_COLUMNS if c.label not in {r.label for r in RUN_COLUMNS}),
    )

    describe: var[dict[str, Any] | None] = var(None, init=False)
    """The requester's latest answer (None before the first)."""
    problem: var[str] = var("", init=False)
    """Why the view may be stale: the requester did not answer, or nobody knows the job."""

    def __init__(self, job_id: str, *, requester: str | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        self._requester = requester  # peer id, if the caller knows it
        self._requester_api: str | None = None
        self._gates: tuple[GateSummary, ...] = ()
        self._wake = asyncio.Event()
        self._output_wake = asyncio.Event()
        self._output: Worker[None] | None = None

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield JobHeader(id="job-header")
        yield GatePanel(id="gates")
        yield RunTable(id="runs")
        yield TimelineTable(id="timeline")
        yield OutputPane(id="output")
        yield ResultsPanel(id="results")
        yield FilterInput(id="filter")
        yield KeyBar()

    @property
    def bacalhau(self) -> TuiHost:
        return host_of(self)

    @property
    def gates(self) -> tuple[GateSummary, ...]:
        """The gates the job waited at in the latest answer."""
        return self._gates

    def on_mount(self) -> None:
        self.query_one(GatePanel).display = False
        self.query_one(GatePanel).border_title = "Gate"
        self.query_one(ResultsPanel).border_title = "Results"
        self._show_header()
        self._retitle()
        self._follow()

    def on_screen_resume(self) -> None:
        self.refresh_now()  # shown again: bring it up to date at once

    # -- polling ------------------------------------------------------------------------

    def _targets(self) -> tuple[NodeTarget, ...]:
        return self.bacalhau.source.targets or self.bacalhau.source.reload()

    def _names(self) -> dict[str, str]:
        return {t.peer_id: t.name for t in self._targets()}

    def _now(self) -> float:
        # The snapshot's clock, so ages agree with the other views (and tests can fix it).
        snapshot = self.bacalhau.snapshot
        return snapshot.at if snapshot is not None else time.time()

    async def _locate(self) -> str | None:
        """The requester's API URL: the one the caller or the jobs list names, else the
        one a node that knows the job names (or that node, if it is not in the cluster)."""
        targets = self._targets()
        by_peer = {t.peer_id: t for t in targets}
        hint = self._requester
        snapshot = self.bacalhau.snapshot
        if hint is None and snapshot is not None:
            hint = next((j.requester for j in snapshot.jobs if j.job_id == self.job_id), None)
        if hint in by_peer:
            return by_peer[hint].api

        async def ask(target: NodeTarget) -> dict[str, Any] | None:
            api = connect(target.api, timeout=LOCATE_TIMEOUT_S)
            try:
                return await api.describe(self.job_id)
            except NodeApiError:
                return None
            finally:
                await api.aclose()

        for start in range(0, len(targets), LOCATE_CONCURRENCY):
            chunk = targets[start : start + LOCATE_CONCURRENCY]
            answers = await asyncio.gather(*(ask(t) for t in chunk))
            for target, answer in zip(chunk, answers, strict=True):
                if answer is None:
                    continue
                requester = str(answer.get("requester") or "")
                self._requester = requester or target.peer_id
                return by_peer[requester].api if requester in by_peer else target.api
        return None

    async def _connect(self) -> AsyncNodeClient | None:
        """A client on the requester's API, or None (and the problem said) if no node
        knows the job yet."""
        located = await self._locate()
        if located is None:
            self.problem = f"no node of the cluster knows job {self.job_id}; asking again"
            return None
        self._requester_api = located
        return connect(located)

    async def _ask(self, api: AsyncNodeClient) -> bool:
        """Ask the requester once; True once the job has ended and its answer no longer
        changes (nothing more to follow)."""
        try:
            answer = await api.describe(self.job_id)
        except NodeApiError as exc:
            who = name_of(self._requester or "", self._names()) or "the requester"
            self.problem = f"{who} did not answer ({exc.message}); asking again"
            return False
        ended = answer == self.describe and job_summary(answer).terminal
        self.problem = ""
        self.describe = answer  # a reactive: an equal answer changes nothing on screen
        return ended

    @work(exclusive=True, group="follow", name="follow the job")
    async def _follow(self) -> None:
        api: AsyncNodeClient | None = None
        try:
            while True:
                # Out of sight (another view, or a screen over this one): ask when shown
                # again (on_screen_resume wakes this loop).
                delay = self.bacalhau.refresh_interval
                if self.is_current or self.describe is None:
                    api = api or await self._connect()
                    if api is None:
                        # Nobody knows the job (yet): asking every node each interval
                        # would cost a big cluster a request per node per interval.
                        delay = max(delay, LOCATE_RETRY_S)
                    elif await self._ask(api):
                        return
                self._show_header()
                await wait_for_wake(self._wake, delay)
        finally:
            if api is not None:
                await api.aclose()

    def refresh_now(self) -> None:
        """Ask the requester now rather than at the next interval (and follow its
        output again now, if that waits to be retried)."""
        self._wake.set()
        self._output_wake.set()

    @property
    def output_worker(self) -> Worker[None] | None:
        """The worker following the job's output (None before the first answer)."""
        return self._output

    def _start_output(self) -> None:
        """Follow the job's output from the requester the first answer came from."""
        if self._output is None and self._requester_api is not None:
            self._output = self._follow_output(self._requester_api)

    @work(exclusive=True, group="output", name="follow the job's output")
    async def _follow_output(self, requester_api: str) -> None:
        """Feed the pane the job's output stream until its end record comes.

        A refusal, a node that went away or a stream that ended early is one line in
        the pane; while the job has not ended (as its latest answer says), the stream
        is asked again after :data:`OUTPUT_RETRY_S` (sooner on :meth:`refresh_now`).
        The pane skips what it has shown already, as a new stream starts from the
        oldest line the requester kept. Cancelled with the screen."""
        pane = self.query_one(OutputPane)
        while True:
            self._output_wake.clear()  # only a wake while this waits to retry counts
            api = connect(requester_api)
            problem, gone = "the output stream stopped before its end record", False
            try:
                async for record in api.job_output(self.job_id, follow=True):
                    if not isinstance(record, dict):
                        continue
                    if "ended" not in record:
                        pane.add_record(record)
                    elif record.get("ended"):
                        pane.end(str(record.get("state") or ""))
                        return
                    else:  # the job runs on, but the stream stopped (not followed)
                        break
            except NodeApiError as exc:
                problem, gone = exc.message, exc.code == "output_gone"  # it ended long ago
            finally:
                await api.aclose()
            if gone or (self.describe is not None and job_summary(self.describe).terminal):
                pane.note(problem)
                return
            pane.note(f"{problem}; following again in {OUTPUT_RETRY_S:g} s")
            await wait_for_wake(self._output_wake, OUTPUT_RETRY_S)

    # -- showing ------------------------------------------------------------------------

    def _show_header(self) -> None:
        summary = job_summary(self.describe) if self.describe is not None else None
        self.query_one(JobHeader).show_text(
            header_text(
                summary, self._names(), self._now(), job_id=self.job_id, problem=self.problem
            )
        )

    def watch_problem(self) -> None:
        self._show_header()

    def watch_describe(self, describe: dict[str, Any] | None) -> None:
        if describe is None:
            return
        names, now = self._names(), self._now()
        summary = job_summary(describe)
        self.query_one(OutputPane).label_by(
            names, places=(summary.concurrency or 1) * summary.shards, shards=summary.shards
        )
        self._start_output()
        self._gates = tuple(gate_summaries(describe))
        self.query_one(GatePanel).show_gates(self._gates, names, GATE_KEY)
        self.query_one(RunTable).show(run_phases(describe, names), now)
        self.query_one(TimelineTable).show(timeline(describe, names), now)
        self.query_one(ResultsPanel).show_text(
            results_text(
                shard_results(describe),
                shard_phases(describe),
                names,
                step=is_step(describe),
                ended=summary.terminal,
            )
        )
        self._show_header()
        self._retitle()
        self.refresh_bindings()

    def _retitle(self) -> None:
        runs = self.query_one(RunTable)
        runs.border_title = runs.title("Runs (shard, node)")
        table = self.query_one(TimelineTable)
        table.border_title = table.title("Timeline")
        table.border_subtitle = "· an event of the requester's own compute part"
        gates = self._gates
        if gates:
            names = sorted({g.name for g in gates})
            self.query_one(GatePanel).border_title = f"⏸ Gate: {', '.join(names)}"
        self.sub_title = short_job_id(self.job_id)

    def on_record_table_sort_changed(self) -> None:
        self._retitle()

    # -- keys ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_gate":
            # Disabled (shown dimmed; the key goes on to the focused widget) without a
            # gate, and while the filter line has the focus (enter closes it there).
            return True if self._gates and not isinstance(self.focused, Input) else None
        if action == "filter":
            return not isinstance(self.focused, Input)  # "/" typed in the filter line
        return True

    def action_open_gate(self) -> None:
        self._step()

    def action_cancel_job(self) -> None:
        self._cancel()

    async def _ask_requester(self, ask: str, refused: str) -> dict[str, Any] | None:
        """POST ``ask`` (``step`` or ``cancel``) for this job to its requester; None,
        the user told why under the title ``refused``, if it could not be done."""
        if self._requester_api is None:
            self.notify("the job's requester is not known yet", severity="warning")
            return None
        api = connect(self._requester_api)
        try:
            return cast("dict[str, Any]", await getattr(api, ask)(self.job_id))
        except NodeApiError as exc:
            severity = "warning" if exc.status == 409 else "error"
            self.notify(exc.message, title=refused, severity=severity)
            return None
        finally:
            await api.aclose()

    @work(exclusive=True, group="cancel", name="cancel the job")
    async def _cancel(self) -> None:
        if await self._ask_requester("cancel", "Not cancelled") is not None:
            self.notify(f"job {short_job_id(self.job_id)} cancelled", title="Cancel")
            self.refresh_now()

    @work(exclusive=True, group="step", name="open the gate")
    async def _step(self) -> None:
        answer = await self._ask_requester("step", "Not opened")
        if answer is None:
            return
        shards = sorted({g.get("shard") for g in answer.get("gates") or ()} - {None})
        which = f"shard {shards[0]}" if len(shards) == 1 else f"{len(shards)} shards"
        self.notify(f"opened the {answer.get('opened') or 'next'} gate of {which}", title="Step")
        self.refresh_now()

    def action_toggle_pause(self) -> None:
        """Pause the output pane (new lines wait), or show what waited and follow on."""
        pane = self.query_one(OutputPane)
        pane.paused = not pane.paused

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(TimelineTable).filter_text = event.value
        self._retitle()

    def on_filter_input_closed(self, event: FilterInput.Closed) -> None:
        self.set_focus(self.query_one(TimelineTable))
