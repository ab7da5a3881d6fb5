"""Event-loop stall detection for trio.

This module owns :class:`StallDetector`, a :class:`trio.abc.Instrument` that times every task
step and reports the ones that block the run loop for longer than a threshold, and the
scheduling-delay figures (how long a runnable task waits before it gets to run) that tell
whether the loop is saturated. It also owns the read-only snapshot types it hands out,
:class:`StallStatistics` and :class:`TaskStalls`, and :func:`measure_overhead`, which prices
the instrument in nanoseconds per task step.

Trio is cooperative: while one task runs a step (the code between two checkpoints), nothing
else on that loop runs. A step that takes 100 ms is 100 ms of latency for every other task,
which is what "stall" means here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from trio.lowlevel import Task

from profiles.quantiles import nearest_rank
from profiles.ratelimit import WarningLimiter, suppressed_note

__all__ = ["StallDetector", "StallStatistics", "TaskStalls", "measure_overhead"]

logger = logging.getLogger("profiles.stalls")

# Bound once at import: the hooks run on every task step, and a module-global lookup is
# cheaper than an attribute lookup on the ``time`` module each time.
_now: Callable[[], int] = time.perf_counter_ns
_cpu_now: Callable[[], int] = time.thread_time_ns

_NS_PER_MS = 1_000_000
#: A task step longer than this is a stall.
DEFAULT_THRESHOLD_MS = 20.0
_MAX_STACK_FRAMES = 32
_TOP_TASKS = 20
# Task names can be unique per task (f"conn-{n}"), so per-name state is capped; stalls of
# names beyond the cap are pooled under _OTHER_TASKS instead of growing without bound.
_MAX_TRACKED_NAMES = 1000
_OTHER_TASKS = "<other tasks>"


@dataclass(frozen=True, slots=True)
class TaskStalls:
    """Stalls attributed to one task name.

    Tasks are grouped by ``task.name``, so several tasks spawned from the same function
    (and therefore sharing a default name) are counted together. ``total_ms`` and ``max_ms``
    cover only steps that exceeded the threshold, never ordinary steps; ``cpu_ms`` is the
    CPU time the loop's thread spent in those steps.
    """

    name: str
    stalls: int
    total_ms: float
    max_ms: float
    cpu_ms: float


@dataclass(frozen=True, slots=True)
class StallStatistics:
    """A consistent snapshot of a :class:`StallDetector`, taken by
    :meth:`StallDetector.statistics`.

    ``per_task`` holds at most 20 entries, largest ``total_ms`` first. ``worst_stack`` is
    the stack of the task behind the worst stall, outermost frame first, as
    ``"file:line in function"`` strings; it shows where that task was suspended when the
    stalling step ended (or, if the task finished in that step, its coroutine's function).
    The ``sched_delay_*`` fields are 0.0 until a scheduling delay has been observed; the
    p99 is over the most recent samples only (see ``StallDetector``).

    ``stall_cpu_ms_total`` is the CPU time the loop's thread spent in the stalled steps, and
    ``cpu_stalls`` counts the stalls whose CPU time alone passed the threshold. A stall far
    above its CPU time is the thread not running (the OS ran other processes, or another
    thread held the GIL): a loaded machine, not slow code.
    """

    threshold_ms: float
    steps: int
    stalls: int
    cpu_stalls: int
    stall_ms_total: float
    stall_cpu_ms_total: float
    worst_stall_ms: float
    worst_task: str | None
    worst_stack: tuple[str, ...]
    per_task: tuple[TaskStalls, ...]
    sched_delay_count: int
    sched_delay_mean_ms: float
    sched_delay_p99_ms: float
    sched_delay_max_ms: float


class StallDetector(trio.abc.Instrument):
    """Times every task step and records the ones longer than ``threshold_ms``.

    Install it with ``trio.run(..., instruments=[detector])`` or
    :func:`trio.lowlevel.add_instrument`. Guarantees:

    * Every completed task step is counted in ``steps``; a step strictly longer than the
      threshold is a stall, counted (with its duration) under the task's name.
    * The stack is captured only when a stall becomes the new worst, so the cost of a
      stall is a few dict operations unless it breaks the record.
    * Per-name state is capped at 1000 names; stalls of further names are pooled under
      ``"<other tasks>"`` (the worst-stall task name and the warnings keep the real name).
    * At most one warning per task name per ``warn_interval_s`` is logged to
      ``profiles.stalls``; the next warning for that name says how many were suppressed.
      (Past 1000 distinct names the rate-limit memory is dropped, which can let one early
      warning per name through.)
    * The scheduling delay of a task is the time from :meth:`task_scheduled` to its next
      :meth:`before_task_step`. Count, mean and max are exact; the p99 is over the last
      ``sched_samples`` delays.

    The hooks do no string work and allocate nothing beyond the integers they compute. A
    detector belongs to one run loop at a time: the hooks keep per-step state on the
    instance, which is safe because trio runs one task step at a time. :meth:`statistics`
    and :meth:`reset` are meant to be called from the loop's thread (from a task, or after
    ``trio.run`` returns); from another thread they see a possibly torn snapshot.
    """

    def __init__(
        self,
        threshold_ms: float = DEFAULT_THRESHOLD_MS,
        *,
        warn_interval_s: float = 1.0,
        sched_samples: int = 2048,
    ) -> None:
        if not threshold_ms > 0:
            raise ValueError(f"threshold_ms must be > 0, got {threshold_ms!r}")
        if sched_samples < 1:
            raise ValueError(f"sched_samples must be >= 1, got {sched_samples!r}")
        self.threshold_ms: float = float(threshold_ms)
        self._threshold_ns: int = int(threshold_ms * _NS_PER_MS)
        self._warnings = WarningLimiter(warn_interval_s, max_keys=_MAX_TRACKED_NAMES)
        self._sched_cap: int = sched_samples
        self.reset()

    def reset(self) -> None:
        """Forget everything observed so far; the configuration is kept."""
        # 0 means "no step in progress": an instrument added or reset mid-step must not
        # time that step from some stale start.
        self._step_start: int = 0
        self._steps: int = 0
        self._stalls: int = 0
        self._stall_ns_total: int = 0
        self._cpu_stalls: int = 0
        self._stall_cpu_ns_total: int = 0
        self._step_cpu: int = 0
        # name -> [stalls, total_ns, max_ns, cpu_ns]; a list so the slow path updates in place.
        self._per_task: dict[str, list[int]] = {}
        self._worst_ns: int = 0
        self._worst_task: str | None = None
        self._worst_stack: tuple[str, ...] = ()
        self._warnings.clear()
        # Keyed by the Task itself (identity hash): ids could be reused by a new task.
        self._scheduled: dict[Task, int] = {}
        self._sched_n: int = 0
        self._sched_total_ns: int = 0
        self._sched_max_ns: int = 0
        self._sched_ring: list[int] = [0] * self._sched_cap

    # -- hooks: these run on every task step, keep them lean --------------------------

    def task_scheduled(self, task: Task) -> None:
        self._scheduled[task] = _now()

    def before_task_step(self, task: Task) -> None:
        now = _now()
        t0 = self._scheduled.pop(task, None)
        # None when the task was scheduled before this detector was installed.
        if t0 is not None:
            delay = now - t0
            n = self._sched_n
            self._sched_ring[n % self._sched_cap] = delay
            self._sched_n = n + 1
            self._sched_total_ns += delay
            if delay > self._sched_max_ns:
                self._sched_max_ns = delay
        self._step_start = now
        self._step_cpu = _cpu_now()

    def after_task_step(self, task: Task) -> None:
        end = _now()
        start = self._step_start
        self._step_start = 0
        if not start:
            return
        self._steps += 1
        elapsed = end - start
        if elapsed > self._threshold_ns:
            self._record_stall(task, elapsed, end, _cpu_now() - self._step_cpu)

    def after_run(self) -> None:
        # Tasks scheduled but never stepped (the run ended first) must not stay alive,
        # nor be matched against a later run.
        self._scheduled.clear()
        self._step_start = 0

    # -- slow path ---------------------------------------------------------------------

    def _record_stall(self, task: Task, elapsed: int, now: int, cpu: int) -> None:
        name = task.name
        self._stalls += 1
        self._stall_ns_total += elapsed
        self._stall_cpu_ns_total += cpu
        if cpu > self._threshold_ns:
            self._cpu_stalls += 1
        entry = self._per_task.get(name)
        if entry is None and len(self._per_task) >= _MAX_TRACKED_NAMES:
            entry = self._per_task.get(_OTHER_TASKS)
            if entry is None:
                entry = self._per_task[_OTHER_TASKS] = [0, 0, 0, 0]
        if entry is None:
            self._per_task[name] = [1, elapsed, elapsed, cpu]
        else:
            entry[0] += 1
            entry[1] += elapsed
            if elapsed > entry[2]:
                entry[2] = elapsed
            entry[3] += cpu
        if elapsed > self._worst_ns:
            self._worst_ns = elapsed
            self._worst_task = name
            self._worst_stack = _task_stack(task)

        suppressed = self._warnings.admit(name, now)
        if suppressed is None:
            return
        logger.warning(
            "event loop stalled for %.1f ms (%.1f ms of it on the CPU) by task %r"
            " (threshold %.1f ms)%s",
            elapsed / _NS_PER_MS,
            cpu / _NS_PER_MS,
            name,
            self.threshold_ms,
            suppressed_note(suppressed),
        )

    # -- reporting ---------------------------------------------------------------------

    def statistics(self) -> StallStatistics:
        """Return a snapshot of everything observed since construction or :meth:`reset`."""
        per_task = sorted(
            (
                TaskStalls(name, e[0], e[1] / _NS_PER_MS, e[2] / _NS_PER_MS, e[3] / _NS_PER_MS)
                for name, e in self._per_task.items()
            ),
            key=lambda t: t.total_ms,
            reverse=True,
        )[:_TOP_TASKS]
        n = self._sched_n
        if n:
            samples = sorted(self._sched_ring[: min(n, self._sched_cap)])
            p99_ns = nearest_rank(samples, 0.99, 0)
            mean_ms = self._sched_total_ns / n / _NS_PER_MS
        else:
            p99_ns = 0
            mean_ms = 0.0
        return StallStatistics(
            threshold_ms=self.threshold_ms,
            steps=self._steps,
            stalls=self._stalls,
            cpu_stalls=self._cpu_stalls,
            stall_ms_total=self._stall_ns_total / _NS_PER_MS,
            stall_cpu_ms_total=self._stall_cpu_ns_total / _NS_PER_MS,
            worst_stall_ms=self._worst_ns / _NS_PER_MS,
            worst_task=self._worst_task,
            worst_stack=self._worst_stack,
            per_task=tuple(per_task),
            sched_delay_count=n,
            sched_delay_mean_ms=mean_ms,
            sched_delay_p99_ms=p99_ns / _NS_PER_MS,
            sched_delay_max_ms=self._sched_max_ns / _NS_PER_MS,
        )


def _task_stack(task: Task) -> tuple[str, ...]:
    """Where ``task`` is suspended, outermost frame first, as ``file:line in function``."""
    frames: list[str] = []
    iter_frames = getattr(task, "iter_await_frames", None)
    if iter_frames is not None:
        for frame, lineno in iter_frames():
            code = frame.f_code
            frames.append(f"{code.co_filename}:{lineno} in {code.co_name}")
            if len(frames) >= _MAX_STACK_FRAMES:
                break
    else:
        # trio < 0.22: walk the await chain by hand (coroutines only).
        coro: object = task.coro
        while coro is not None and len(frames) < _MAX_STACK_FRAMES:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                frames.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if not frames:
        # The task finished during the stalling step, so it has no frames left; its code
        # object still says which function it was.
        code = getattr(task.coro, "cr_code", None)
        if code is not None:
            frames.append(f"{code.co_filename}:{code.co_firstlineno} in {code.co_name} (exited)")
    return tuple(frames)


def measure_overhead(steps: int = 20000, *, repeats: int = 3) -> dict[str, float]:
    """Price a :class:`StallDetector` in nanoseconds per task step.

    Runs a loop of ``steps`` ``await trio.sleep(0)`` calls in a fresh ``trio.run``, with
    and without a detector installed, ``repeats`` times each (interleaved, so drift in
    machine load hits both alike), and keeps the fastest run of each: the minimum is the
    figure least polluted by other processes. The detector's threshold is set far out of
    reach so that only the per-step fast path is measured.

    Returns ``{"baseline_ns_per_step", "instrumented_ns_per_step", "overhead_ns_per_step"}``;
    the overhead is the difference and may be slightly negative on a noisy machine.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")

    async def loop() -> int:
        start = _now()
        for _ in range(steps):
            await trio.sleep(0)
        return _now() - start

    baseline = instrumented = math.inf
    for _ in range(max(1, repeats)):
        baseline = min(baseline, trio.run(loop) / steps)
        detector = StallDetector(threshold_ms=3_600_000.0)
        instrumented = min(instrumented, trio.run(loop, instruments=[detector]) / steps)
    return {
        "baseline_ns_per_step": baseline,
        "instrumented_ns_per_step": instrumented,
        "overhead_ns_per_step": instrumented - baseline,
    }
