"""The Textual app: views, keys, the polling worker, and how the TUI ends.

This module owns :class:`BacalhauApp` and :func:`run_tui`. The app runs one worker
that polls the cluster through a :class:`~tui.source.ClusterSource` every
``refresh`` seconds (sooner when a view asks, :meth:`BacalhauApp.poll_now`) and
publishes each :class:`~tui.source.ClusterSnapshot` as the reactive
:attr:`BacalhauApp.snapshot`, which the views watch.

Views are Textual modes, listed once in :data:`VIEWS` (key, palette command, screen):
``n`` nodes (home), ``j`` jobs; a new view is one more :class:`View`. A detail screen
is pushed on top of its view: :meth:`BacalhauApp.open_job` /
:meth:`~BacalhauApp.open_node` (on :class:`~tui.messages.JobSelected` /
:class:`~tui.messages.NodeSelected`) push ``JobScreen(job_id)`` /
``NodeScreen(peer_id)`` from ``tui.screens.job`` / ``tui.screens.node`` once those
modules exist, and do nothing until then. ``esc`` goes back: pops a pushed screen,
else returns home.

Quitting (``q``, ``ctrl+q``, the palette) from a TUI that ``devstack up`` opened asks
whether to stop the cluster; the app's return value says what was answered.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.screen import Screen

from tui.messages import JobSelected, NodeSelected
from tui.screens.confirm_stop import ConfirmStopScreen
from tui.screens.help import HelpScreen
from tui.screens.jobs import JobsScreen
from tui.screens.locks import LocksScreen
from tui.screens.nodes import NodesScreen
from tui.source import ClusterSnapshot, ClusterSource
from tui.waiting import wait_for_wake

MIN_REFRESH_S = 0.2
MAX_REFRESH_S = 60.0


def default_refresh(nodes: int) -> float:
    """Seconds between polls: 1 s, or 2 s above 20 nodes (each poll costs every node a
    request, and a 50-node devstack on 2 cores has little CPU to spare)."""
    return 1.0 if nodes <= 20 else 2.0


@dataclass(frozen=True)
class View:
    """A top-level view: a mode of the app with its key and palette entry."""

    mode: str
    key: str
    title: str
    description: str
    screen: Callable[[], Screen[Any]]


VIEWS: tuple[View, ...] = (
    View("nodes", "n", "Nodes", "Every node: CPU, memory, contention, latency", NodesScreen),
    View("jobs", "j", "Jobs", "Every job requested on any node", JobsScreen),
    View("locks", "l", "Locks", "The cluster's most contended locks and loop stalls", LocksScreen),
)
HOME = VIEWS[0].mode


class BacalhauApp(App[bool]):
    """The py-bacalhau devstack TUI. ``run()`` returns True if the user asked, on
    quitting, to stop the cluster (only asked when ``ask_stop_on_quit``)."""

    # The views' stylesheets (each also its screen's CSS_PATH) are read here too, so
    # they are parsed once at start: Textual re-parses every stylesheet whenever a
    # screen brings a new one, which made the first switch to a view cost ~0.5 s.
    CSS_PATH: ClassVar[list[str | Path]] = [
        Path(__file__).with_name("app.tcss"),
        NodesScreen.CSS_PATH,
        JobsScreen.CSS_PATH,
        LocksScreen.CSS_PATH,
        # The detail screens' too, by path: their modules load on first use.
        *(
            Path(__file__).with_name("screens") / f"{name}.tcss"
            for name in ("job", "node", "submit")
        ),
    ]
    TITLE = "py-bacalhau devstack"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        view.mode: view.screen for view in VIEWS
    }
    DEFAULT_MODE = HOME

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        *(
            Binding(view.key, f"switch_mode('{view.mode}')", view.title, tooltip=view.description)
            for view in VIEWS
        ),
        Binding("s", "submit", "Submit", tooltip="Submit a job: the form"),
        Binding("escape", "back", "Back", show=False),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False),
    ]

    snapshot: var[ClusterSnapshot | None] = var(None, always_update=True, init=False)
    """The latest round of the poller (None before the first)."""

    def __init__(
        self,
        source: ClusterSource,
        *,
        refresh: float | None = None,
        ask_stop_on_quit: bool = False,
    ) -> None:
        super().__init__()
        self.source = source
        if refresh is None:
            refresh = default_refresh(len(source.reload()))
        self.refresh_interval = min(MAX_REFRESH_S, max(MIN_REFRESH_S, refresh))
        self.ask_stop_on_quit = ask_stop_on_quit
        self._wake = asyncio.Event()
        self._asking = False

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self._poll_cluster()
        self.call_after_refresh(self._warm_views)

    async def _warm_views(self) -> None:
        """Mount every view once, unseen, right after the first frame.

        Textual mounts a mode's screen, and re-parses every stylesheet, the first time
        the mode is shown. Done now, the first ``j`` costs ~0.15 s of CPU here instead
        of ~0.4 s (later ones ~0.04 s)."""
        home = self.current_mode
        with self.batch_update():
            for view in VIEWS:
                if view.mode != home:
                    await self.switch_mode(view.mode)
            await self.switch_mode(home)
        # Everything built so far (Textual, the views) lives as long as the app: move it
        # out of the collector's sight. A full collection over it took ~140 ms, often in
        # the middle of a key press.
        gc.collect()
        gc.freeze()

    # -- polling ----------------------------------------------------------------------

    @work(exclusive=True, group="poll", name="poll the cluster")
    async def _poll_cluster(self) -> None:
        async with self.source:
            while True:
                started = time.monotonic()
                self.snapshot = await self.source.poll()
                delay = self.refresh_interval - (time.monotonic() - started)
                await wait_for_wake(self._wake, max(0.05, delay))

    def poll_now(self) -> None:
        """Start the next round now instead of at the next refresh."""
        self._wake.set()

    # -- views and detail screens -------------------------------------------------------

    def _detail_screen(self, module: str, name: str) -> type[Screen[Any]] | None:
        """``tui.screens.<module>.<name>`` if the TUI has that screen yet, else None."""
        try:
            found = importlib.import_module(f"tui.screens.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tui.screens.{module}":
                return None
            raise
        return getattr(found, name, None)

    def open_job(self, job_id: str) -> None:
        """Push the job's screen, if the TUI has one."""
        screen = self._detail_screen("job", "JobScreen")
        if screen is not None:
            self.push_screen(screen(job_id))  # type: ignore[call-arg]

    def open_node(self, peer_id: str) -> None:
        """Push the node's screen, if the TUI has one."""
        screen = self._detail_screen("node", "NodeScreen")
        if screen is not None:
            self.push_screen(screen(peer_id))  # type: ignore[call-arg]

    def on_job_selected(self, message: JobSelected) -> None:
        self.open_job(message.job_id)

    def on_node_selected(self, message: NodeSelected) -> None:
        self.open_node(message.peer_id)

    async def action_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self.current_mode != HOME:
            await self.switch_mode(HOME)

    def action_submit(self) -> None:
        """Open the submit form over the current screen."""
        # Imported when asked: the form checks specs with node.models, whose import (trio
        # and the content code) costs ~0.3 s that the TUI's start need not pay.
        from tui.screens.submit import SubmitScreen

        if not isinstance(self.screen, SubmitScreen):
            self.push_screen(SubmitScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for view in VIEWS:
            yield SystemCommand(
                f"{view.title} view",
                f"{view.description} (key {view.key})",
                lambda mode=view.mode: self.run_action(f"switch_mode('{mode}')"),
            )
        yield SystemCommand(
            "Submit a job",
            "Image, command, deal, verifier, publisher, step mode, inputs, sharding (key s)",
            self.action_submit,
        )
        yield SystemCommand("Help", "The keys and columns of this view (key ?)", self.action_help)
        yield SystemCommand(
            "Light / dark", "Switch between the light and the dark theme", self.action_toggle_theme
        )
        yield SystemCommand("Refresh now", "Poll every node now", self.poll_now)
        yield from super().get_system_commands(screen)

    # -- quitting ---------------------------------------------------------------------

    async def action_quit(self) -> None:
        if not self.ask_stop_on_quit:
            self.exit(False)
            return
        if self._asking:
            return
        self._asking = True

        def answered(stop: bool | None) -> None:
            self._asking = False
            if stop is not None:
                self.exit(stop)

        nodes = len(self.source.targets) or None
        self.push_screen(ConfirmStopScreen(nodes), answered)


class TuiFailed(RuntimeError):
    """The app ended on an error (Textual has printed its traceback)."""

    def __init__(self, return_code: int) -> None:
        super().__init__(f"the TUI failed (exit status {return_code})")
        self.return_code = return_code


def run_tui(state_dir: Path, refresh: float | None = None, ask_stop_on_quit: bool = False) -> bool:
    """Run the TUI on the devstack in ``state_dir`` until the user quits.

    Returns True if the user asked to stop the cluster (only asked when
    ``ask_stop_on_quit``, as when ``devstack up`` opened the TUI); the caller stops it.
    Raises :class:`TuiFailed` if the app ended on an error.
    """
    source = ClusterSource(state_dir)
    app = BacalhauApp(source, refresh=refresh, ask_stop_on_quit=ask_stop_on_quit)
    stop = app.run()
    if app.return_code:
        raise TuiFailed(app.return_code)
    return bool(stop)
