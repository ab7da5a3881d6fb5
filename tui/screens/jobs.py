"""The jobs view: every job requested on any node, newest first.

This module owns :class:`JobsScreen`: the summary bar, the :class:`JobTable`, the
``/`` filter line and the keys (all but the table from
:class:`~tui.screens.live_table.LiveTableScreen`). While it is on screen the app's
source polls the requesters' job lists (``ClusterSource.watch_jobs``); ``enter`` on a
job posts :class:`~tui.messages.JobSelected`, which the app turns into the job's own
screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tui.screens.live_table import LiveTableScreen
from tui.source import ClusterSnapshot, JobRow
from tui.widgets.job_table import JOB_COLUMNS, JobTable
from tui.widgets.record_table import RecordTable


class JobsScreen(LiveTableScreen):
    """The jobs list: state, shards, concurrency, verifier, publisher, age, latency."""

    CSS_PATH = Path(__file__).with_name("jobs.tcss")
    TABLE_TITLE = "Jobs"

    HELP_TITLE = "Jobs"
    HELP_INTRO = (
        "Every job requested on any node (the newest 50 per requester), newest first;"
        " polled while this view is shown. enter opens a job. Sort and filter as in the"
        " nodes view."
    )
    HELP_COLUMNS = JOB_COLUMNS

    def compose_table(self) -> RecordTable[Any]:
        return JobTable(id="jobs")

    def records(self, snapshot: ClusterSnapshot) -> Sequence[JobRow]:
        return snapshot.jobs

    def subtitle(self, snapshot: ClusterSnapshot | None) -> str:
        if snapshot is None or not snapshot.jobs_fetched:
            return "asking the requesters …"
        if not snapshot.jobs:
            return "no jobs yet: `devstack submit busybox -- echo hello`"
        return ""

    def on_screen_resume(self) -> None:
        # (Textual calls LiveTableScreen.on_screen_resume after this one.)
        if not self.is_current:  # shown and left again before this event came through
            return
        app = self.bacalhau
        app.source.watch_jobs = True
        age = app.source.jobs_age()
        if age is None or age > app.refresh_interval:  # stale: ask now, not at the next round
            app.poll_now()

    def on_screen_suspend(self) -> None:
        self.bacalhau.source.watch_jobs = False
