"""Tests for profiles.stalls: stall attribution, stacks, scheduling delay, logging, overhead.

The blocking calls here (``time.sleep`` inside a task step) are the stalls under test, not
waits for a condition. A stall's length is only bounded below (it lasts at least the sleep
in it), never above, and thresholds sit far from the steps that must not pass them: how
fast or loaded the machine is does not decide a result.
"""

from __future__ import annotations

import logging
import time

import pytest
import trio
import trio.testing

from profiles import stalls
from profiles.stalls import StallDetector, StallStatistics, TaskStalls, measure_overhead

pytestmark = pytest.mark.timeout(60)


async def _block_the_loop(seconds: float) -> None:
    await trio.sleep(0)
    time.sleep(seconds)  # deliberately blocks the run loop: this step is the stall
    await trio.sleep(0)


def _run_blocker(detector: StallDetector) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_block_the_loop, 0.1, name="blocker")

    trio.run(main, instruments=[detector])


def _entry(stats: StallStatistics, name: str) -> TaskStalls:
    matches = [t for t in stats.per_task if t.name == name]
    assert matches, f"no stalls recorded for {name!r}: {stats.per_task}"
    return matches[0]


def test_blocking_step_is_reported_with_name_and_stack() -> None:
    detector = StallDetector(threshold_ms=20.0)
    _run_blocker(detector)
    stats = detector.statistics()

    blocker = _entry(stats, "blocker")
    assert blocker.stalls >= 1
    assert blocker.max_ms >= 95
    assert blocker.total_ms >= blocker.max_ms
    assert stats.worst_task == "blocker"
    assert stats.worst_stall_ms == blocker.max_ms
    assert stats.stalls >= 1
    assert stats.stall_ms_total >= 95
    assert stats.steps > 0
    assert any("in _block_the_loop" in line for line in stats.worst_stack), stats.worst_stack
    assert all(":" in line for line in stats.worst_stack)


async def _burn_the_cpu(seconds: float) -> None:
    await trio.sleep(0)
    # Busy until this thread has had the CPU that long, however loaded the machine.
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    await trio.sleep(0)


def test_cpu_time_tells_slow_code_from_a_thread_that_was_not_running() -> None:
    """A step that sleeps blocks the loop without using the CPU (as when the OS runs
    other processes); a busy step is CPU throughout."""
    detector = StallDetector(threshold_ms=20.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_block_the_loop, 0.1, name="sleeper")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_burn_the_cpu, 0.1, name="burner")

    trio.run(main, instruments=[detector])
    stats = detector.statistics()
    sleeper, burner = _entry(stats, "sleeper"), _entry(stats, "burner")
    assert sleeper.cpu_ms < 20 <= 95 <= sleeper.total_ms
    assert burner.cpu_ms >= 95 and burner.total_ms >= burner.cpu_ms - 1
    assert stats.cpu_stalls >= 1 and stats.stalls >= 2
    assert stats.stall_cpu_ms_total >= burner.cpu_ms + sleeper.cpu_ms - 0.001


def test_stack_of_task_that_exits_in_the_stalling_step() -> None:
    async def _block_then_exit() -> None:
        await trio.sleep(0)
        time.sleep(0.05)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_block_then_exit, name="exiter")

    detector = StallDetector(threshold_ms=20.0)
    trio.run(main, instruments=[detector])
    stats = detector.statistics()
    assert stats.worst_task == "exiter"
    assert any("_block_then_exit" in line for line in stats.worst_stack), stats.worst_stack


def test_short_steps_are_not_stalls() -> None:
    async def spinner() -> None:
        for _ in range(200):
            await trio.sleep(0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(spinner, name=f"spinner-{i}")

    # A minute rather than the default 20 ms: an OS preemption on a loaded box can stretch
    # a short step past any small threshold, and that is not what this test is about.
    detector = StallDetector(threshold_ms=60_000.0)
    trio.run(main, instruments=[detector])
    stats = detector.statistics()
    assert stats.steps >= 600
    assert stats.stalls == 0
    assert stats.per_task == ()
    assert stats.worst_task is None
    assert stats.worst_stack == ()
    assert stats.sched_delay_count > 0
    assert stats.sched_delay_max_ms >= stats.sched_delay_p99_ms >= 0


def test_scheduling_delay_reflects_a_blocked_loop() -> None:
    async def main() -> None:
        event = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(event.wait, name="waiter")
            await trio.testing.wait_all_tasks_blocked()
            # The waiter becomes runnable here but cannot run until this step ends.
            event.set()
            time.sleep(0.1)
            await trio.sleep(0)

    detector = StallDetector(threshold_ms=20.0)
    trio.run(main, instruments=[detector])
    stats = detector.statistics()
    assert stats.sched_delay_max_ms >= 90
    assert stats.sched_delay_count > 0
    assert 0 < stats.sched_delay_mean_ms <= stats.sched_delay_max_ms
    assert stats.sched_delay_p99_ms <= stats.sched_delay_max_ms


def test_one_warning_per_stall(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.stalls")
    _run_blocker(StallDetector(threshold_ms=20.0))
    blocker_warnings = [
        r for r in caplog.records if r.name == "profiles.stalls" and "'blocker'" in r.getMessage()
    ]
    assert len(blocker_warnings) == 1
    assert blocker_warnings[0].levelno == logging.WARNING


async def _stall_repeatedly(times: int) -> None:
    for _ in range(times):
        time.sleep(0.01)  # deliberate 10 ms stall in each step
        await trio.sleep(0)


def _run_repeater(detector: StallDetector) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stall_repeatedly, 5, name="repeater")

    trio.run(main, instruments=[detector])


def _repeater_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "profiles.stalls" and "'repeater'" in r.getMessage()
    ]


def test_warnings_are_rate_limited_per_task(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.stalls")
    # An hour between warnings: all five stalls fall in one interval however slow they run.
    detector = StallDetector(threshold_ms=5.0, warn_interval_s=3600.0)
    _run_repeater(detector)
    assert _entry(detector.statistics(), "repeater").stalls >= 5
    assert len(_repeater_warnings(caplog)) == 1


def test_rate_limit_interval_is_configurable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.stalls")
    detector = StallDetector(threshold_ms=5.0, warn_interval_s=0.0)
    _run_repeater(detector)
    stalls = _entry(detector.statistics(), "repeater").stalls
    assert stalls >= 5
    assert len(_repeater_warnings(caplog)) == stalls


def test_per_name_state_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stalls, "_MAX_TRACKED_NAMES", 2)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(_block_the_loop, 0.01, name=f"conn-{i}")

    detector = StallDetector(threshold_ms=5.0)
    trio.run(main, instruments=[detector])
    stats = detector.statistics()
    names = {t.name for t in stats.per_task}
    assert len(names) <= 3
    assert "<other tasks>" in names
    assert sum(t.stalls for t in stats.per_task) == stats.stalls >= 4


def test_reset_clears_statistics() -> None:
    detector = StallDetector(threshold_ms=20.0)
    _run_blocker(detector)
    assert detector.statistics().stalls >= 1

    detector.reset()
    stats = detector.statistics()
    assert stats == StallStatistics(
        threshold_ms=20.0,
        steps=0,
        stalls=0,
        cpu_stalls=0,
        stall_ms_total=0.0,
        stall_cpu_ms_total=0.0,
        worst_stall_ms=0.0,
        worst_task=None,
        worst_stack=(),
        per_task=(),
        sched_delay_count=0,
        sched_delay_mean_ms=0.0,
        sched_delay_p99_ms=0.0,
        sched_delay_max_ms=0.0,
    )

    # Still works after a reset.
    _run_blocker(detector)
    assert detector.statistics().worst_task == "blocker"


def test_installed_mid_run_with_add_instrument() -> None:
    detector = StallDetector(threshold_ms=20.0)

    async def main() -> None:
        trio.lowlevel.add_instrument(detector)
        # This step began before the detector existed; it must not be timed from 0.
        await trio.sleep(0)
        await _block_the_loop(0.05)
        trio.lowlevel.remove_instrument(detector)

    trio.run(main)
    stats = detector.statistics()
    assert stats.stalls >= 1
    assert stats.worst_stall_ms >= 45


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        StallDetector(threshold_ms=0)
    with pytest.raises(ValueError):
        StallDetector(warn_interval_s=-1)
    with pytest.raises(ValueError):
        StallDetector(sched_samples=0)
    with pytest.raises(ValueError):
        measure_overhead(steps=0)


def test_measure_overhead_returns_positive_figures() -> None:
    figures = measure_overhead(steps=5000)
    assert figures["baseline_ns_per_step"] > 0
    assert figures["instrumented_ns_per_step"] > 0
    assert "overhead_ns_per_step" in figures
