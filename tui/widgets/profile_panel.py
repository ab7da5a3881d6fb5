"""A node's CPU profile in the TUI: progress while it runs, then its call tree.

This module owns :class:`ProfilePanel` (status line, progress bar, the paths of the
saved files, the :class:`CallTree` and the :class:`TopFrames` table),
:class:`ProfileResult` (what a finished profile shows) and :func:`frame_label`.
The screen drives it: :meth:`ProfilePanel.start`, then :meth:`~ProfilePanel.show`
or :meth:`~ProfilePanel.failed`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import DataTable, ProgressBar, Static, Tree
from textual.widgets.tree import TreeNode

from tui.contention import CallNode
from tui.format import fmt_ms

EXPAND_FRACTION = 0.05  # frames with at least this share of the time start expanded


@dataclass(frozen=True)
class ProfileResult:
    """A finished profile: the node's answer, parsed, and where it was saved."""

    node: str
    seconds: int
    samples: int
    top: tuple[dict[str, Any], ...]  # {function, location, self_s}, most self time first
    roots: tuple[CallNode, ...]  # pyinstrument's call tree
    paths: tuple[Path, ...] = ()  # the HTML, text and speedscope files
    save_error: str = ""  # why they could not be saved ("" if they were)

    @property
    def html(self) -> Path | None:
        return next((p for p in self.paths if p.suffix == ".html"), None)

    @property
    def speedscope(self) -> Path | None:
        return next((p for p in self.paths if p.name.endswith(".speedscope.json")), None)


def frame_label(node: CallNode, total: float) -> Text:
    """``0.798s EpollIOManager.get_events  trio/_core/_io_epoll.py:238``, the time red
    over half of ``total``, yellow over a fifth."""
    if node.hidden:
        return Text.assemble((node.function, "dim italic"), "  ", (node.location, "dim"))
    seconds = node.seconds or 0.0
    share = seconds / total if total > 0 else 0.0
    style = "bold red" if share >= 0.5 else "yellow" if share >= 0.2 else "green"
    return Text.assemble(
        (f"{seconds:.3f}s", style), " ", (node.function, "bold"), "  ", (node.location, "dim")
    )


class CallTree(Tree[CallNode]):
    """pyinstrument's call tree; frames with a large share of the time start expanded."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("call tree", id=id)
        self.show_root = False
        self.guide_depth = 3

    def show_tree(self, roots: tuple[CallNode, ...]) -> None:
        self.clear()
        total = max((r.seconds or 0.0 for r in roots), default=0.0)
        for root in roots:
            self._add(self.root, root, total)
        self.root.expand()

    def _add(self, parent: TreeNode[CallNode], node: CallNode, total: float) -> None:
        label = frame_label(node, total)
        if not node.children:
            parent.add_leaf(label, data=node)
            return
        big = (node.seconds or 0.0) >= total * EXPAND_FRACTION or node.hidden
        branch = parent.add(label, data=node, expand=big)
        for child in node.children:
            self._add(branch, child, total)

    def lines(self) -> list[str]:
        """Every frame's label, depth first (for tests and the screen's own use)."""
        out: list[str] = []
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            out.append(str(node.label))
            stack.extend(reversed(node.children))
        return out


class TopFrames(DataTable[Text]):
    """The functions that held the CPU themselves (self time), most first."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.add_column(Text("self", justify="right"), width=6, key="self")
        self.add_column(Text("%", justify="right"), width=3, key="share")
        self.add_column("function", key="function")

    def show_top(self, top: tuple[dict[str, Any], ...], seconds: float) -> None:
        self.clear()
        for i, frame in enumerate(top):
            self_s = float(frame["self_s"])
            share = self_s / seconds * 100 if seconds > 0 else 0.0
            self.add_row(
                Text(fmt_ms(self_s * 1000), justify="right"),
                Text(f"{share:.0f}", justify="right"),
                Text.assemble((frame["function"], "bold"), "  ", (frame["location"], "dim")),
                key=str(i),
            )


class ProfilePanel(Vertical):
    """Profiling progress, then the saved files, the call tree and the top frames."""

    running: reactive[bool] = reactive(False, init=False)
    """A profile is being taken (or rendered, or saved)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result: ProfileResult | None = None
        self._started = 0.0
        self._seconds = 0
        self._node = ""
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("p profiles this node: its call tree shows here", id="profile-status")
        yield ProgressBar(show_eta=False, id="profile-progress")
        yield Static("", id="profile-paths")
        with Horizontal(id="profile-body"):
            yield CallTree(id="profile-tree")
            yield TopFrames(id="profile-top")

    def _status(self, text: str | Text) -> None:
        self.query_one("#profile-status", Static).update(text)

    def start(self, node: str, seconds: int) -> None:
        """A profile of ``seconds`` began on ``node``: show its progress."""
        self.running = True
        self._node, self._seconds, self._started = node, seconds, time.monotonic()
        bar = self.query_one(ProgressBar)
        bar.update(total=seconds, progress=0)
        bar.display = True
        self._status(f"profiling {node} for {seconds} s …")
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(0.25, self._tick)

    def _tick(self) -> None:
        elapsed = time.monotonic() - self._started
        self.query_one(ProgressBar).update(progress=min(elapsed, self._seconds))
        if elapsed >= self._seconds:
            self._status(f"{self._node} is rendering its profile (HTML, text, speedscope) …")

    def _stop(self) -> None:
        self.running = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.query_one(ProgressBar).display = False

    def show(self, result: ProfileResult) -> None:
        """The profile is done: its files, call tree and top frames."""
        self._stop()
        self.result = result
        status = Text()
        status.append(f"{result.node}: ", style="bold")
        status.append(f"{result.samples} samples over {result.seconds} s")
        self._status(status)
        paths = Text()
        if result.save_error:
            paths.append(f"not saved: {result.save_error}", style="bold red")
        for path in result.paths:
            paths.append(f"{path}\n", style="cyan")
        paths.rstrip()
        self.query_one("#profile-paths", Static).update(paths)
        tree = self.query_one(CallTree)
        tree.show_tree(result.roots)
        tree.border_title = "call tree (total time)"
        top = self.query_one(TopFrames)
        top.show_top(result.top, result.seconds)
        top.border_title = "top frames (self time)"
        if not result.roots:
            self._status(Text.assemble(status, ("  (no samples: nothing ran)", "dim")))

    def failed(self, message: str) -> None:
        self._stop()
        self._status(Text(f"profile failed: {message}", style="bold red"))
