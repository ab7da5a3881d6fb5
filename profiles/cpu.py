"""CPU profiles of a running node: pyinstrument sessions on demand.

A session samples the node's event-loop thread for a number of seconds and
renders what it saw three ways: pyinstrument's HTML, its text tree, and
speedscope JSON. It samples every task on the loop, not only the one that asked:
pyinstrument's async modes attribute samples to the calling task's context,
which here only sleeps, so the session runs with ``async_mode="disabled"``
(time spent waiting in the loop shows as trio's ``get_events``).

One session at a time per process: pyinstrument's sampler is per thread, and two
overlapping sessions would each see the other's overhead.

Two clocks: ``wall`` (pyinstrument's default) samples by elapsed time, so on a
machine with more busy processes than cores a task shows wherever the OS happened
to deschedule the process (a 50-node devstack on 2 cores spends most of its wall
time waiting for a core); ``cpu`` samples by the thread's CPU time, so the tree
is where the CPU went, and waiting shows nowhere.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import trio
from pyinstrument import Profiler
from pyinstrument.frame import Frame
from pyinstrument.renderers import SpeedscopeRenderer
from pyinstrument.session import Session
from pyinstrument.stack_sampler import get_stack_sampler

MAX_SECONDS = 300.0
DEFAULT_INTERVAL_S = 0.001
TOP_FRAMES = 15

Clock = Literal["wall", "cpu"]
CLOCKS: tuple[Clock, ...] = ("wall", "cpu")


class ProfileBusy(RuntimeError):
    """A profile is already being taken in this process; try again when it ends."""


class SessionGuard:
    """Admits one profiling session of a kind per process at a time.

    A second session is refused at once with ``busy``, not queued: it would wait
    for the first, then measure a different interval than was asked for.
    """

    def __init__(self, busy: type[ProfileBusy], what: str) -> None:
        self._lock = trio.Lock()
        self._busy, self._what = busy, what

    @contextmanager
    def session(self, seconds: float) -> Iterator[None]:
        """Hold the guard for one session of ``seconds``.

        Raises ValueError for a duration outside (0, MAX_SECONDS] and the guard's
        ``busy`` exception if a session already holds it. Must be used from a trio task.
        """
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be above 0 and at most {MAX_SECONDS:g}, got {seconds}")
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            raise self._busy(f"a {self._what} is already running on this node") from None
        try:
            yield
        finally:
            self._lock.release()


@dataclass(frozen=True)
class TopFrame:
    function: str
    location: str  # "path:line", shortened
    self_s: float


@dataclass(frozen=True)
class CpuProfile:
    seconds: float
    samples: int
    html: str
    text: str
    speedscope: str
    top: tuple[TopFrame, ...]  # by self time, most first


_guard = SessionGuard(ProfileBusy, "profile")


async def profile_cpu(
    seconds: float, *, interval: float = DEFAULT_INTERVAL_S, clock: Clock = "wall"
) -> CpuProfile:
    """Sample this thread's event loop for ``seconds`` by ``clock`` and render the session.

    Raises ValueError for a duration outside (0, MAX_SECONDS], a bad interval or an
    unknown clock, and :class:`ProfileBusy` if a session is already running in this
    process. Cancelling the wait stops the sampler and raises as usual.
    """
    if not 0 < interval <= 1:
        raise ValueError(f"interval must be in (0, 1] seconds, got {interval}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    with _guard.session(seconds):
        sampler = get_stack_sampler()
        sampler.timer_func = time.thread_time if clock == "cpu" else None
        profiler = Profiler(interval=interval, async_mode="disabled")
        profiler.start()
        try:
            await trio.sleep(seconds)
        finally:
            session = profiler.stop()
            sampler.timer_func = None
        # Rendering a busy loop's session takes seconds of pure Python; on the loop
        # it froze the node being profiled (a 7 s stall on a loaded node).
        return await trio.to_thread.run_sync(_render, profiler, session, seconds)


def _render(profiler: Profiler, session: Session, seconds: float) -> CpuProfile:
    return CpuProfile(
        seconds=seconds,
        samples=session.sample_count,
        html=profiler.output_html(),
        text=profiler.output_text(unicode=True, color=False, show_all=False),
        # Everything: speedscope is for digging, and a node's own code is often
        # under the 1 % that the default processors drop.
        speedscope=profiler.output(renderer=SpeedscopeRenderer(show_all=True)),
        top=top_frames(session.root_frame()),
    )


def top_frames(root: Frame | None, limit: int = TOP_FRAMES) -> tuple[TopFrame, ...]:
    """The functions that held the CPU themselves (self time), summed over the tree."""
    if root is None:
        return ()
    self_time: Counter[tuple[str, str]] = Counter()
    for frame in _walk(root):
        if frame.is_synthetic:
            continue
        location = f"{frame.file_path_short or '?'}:{frame.line_no or 0}"
        self_time[(frame.function, location)] += frame.total_self_time
    return tuple(
        TopFrame(function, location, round(seconds, 4))
        for (function, location), seconds in self_time.most_common(limit)
        if seconds > 0
    )


def _walk(root: Frame) -> Iterator[Frame]:
    stack = [root]
    while stack:
        frame = stack.pop()
        yield frame
        stack.extend(frame.children)
