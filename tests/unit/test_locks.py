"""Tests for profiles.locks: instrumented trio and thread locks and their registry.

Contention is arranged, not hoped for: a holder starts its hold only once the waiter is
parked on the lock (trio.testing.wait_all_tasks_blocked() for tasks; for threads, the
lock's own list of waiters), so the wait recorded covers the whole hold. The only sleeps
are those 50 ms holds. Durations are only bounded below (a wait lasts at least the hold
it waited out), never above: how fast the machine is does not decide a result.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.locks import (
    REGISTRY,
    LockRecorder,
    LockRegistry,
    LockStatistics,
    ThreadLock,
    ThreadRLock,
    TrioLock,
    measure_overhead,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

HOLD_S = 0.05
MIN_NS = 45_000_000
WAIT_S = 30.0  # for the other thread
THIS_FILE = Path(__file__).resolve()


P = ParamSpec("P")


def trio_test(fn: Callable[P, Awaitable[None]]) -> Callable[P, None]:
    """Run an async test under trio.run (the repo has no pytest-trio); fixtures still work."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        trio.run(functools.partial(fn, *args, **kwargs))

    return wrapper


def line_of(marker: str) -> int:
    """The line of this file that ends with the comment ``# <marker>``."""
    for number, line in enumerate(THIS_FILE.read_text().splitlines(), start=1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"marker {marker!r} not found")


def site(marker: str, function: str) -> str:
    return f"{THIS_FILE}:{line_of(marker)} in {function}"


def only(registry: LockRegistry) -> LockStatistics:
    (stats,) = registry.statistics()
    return stats


def wait_parked(lock: ThreadLock | ThreadRLock) -> None:
    """Until a thread has begun waiting for ``lock`` (its wait is being timed)."""
    wait_until(lambda: lock._waiting, WAIT_S, 0.001, f"a thread to wait for {lock.name!r}")


def messages(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "profiles.locks" and word in r.getMessage()
    ]


@trio_test
async def test_trio_contended_wait_and_hold_are_recorded_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.locks")
    registry = LockRegistry()
    lock = TrioLock("trio-contended", registry=registry)  # trio-created
    assert lock.created_at == f"{THIS_FILE}:{line_of('trio-created')}"

    async def waiter() -> None:
        async with lock:  # trio-waiter
            pass

    async with trio.open_nursery() as nursery, lock:  # trio-holder
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert lock.statistics().tasks_waiting == 1
        await trio.sleep(HOLD_S)

    stats = only(registry)
    assert stats.name == "trio-contended"
    assert stats.acquisitions == 2
    assert stats.contended == 1
    assert stats.slow_waits == 1  # the wait passed the registry's warn_ms
    assert stats.max_wait_ns >= MIN_NS
    assert stats.total_wait_ns == stats.max_wait_ns == stats.p99_wait_ns == stats.mean_wait_ns
    assert stats.max_hold_ns >= MIN_NS
    waiter_site = site("trio-waiter", "waiter")
    holder_site = site("trio-holder", "test_trio_contended_wait_and_hold_are_recorded_and_warned")
    assert stats.top_waiters == ((waiter_site, 1),)
    assert stats.top_holders == ((holder_site, 1),)

    (waited,) = messages(caplog, "waited")
    assert "'trio-contended'" in waited
    assert lock.created_at in waited
    assert waiter_site in waited
    assert holder_site in waited
    (held,) = messages(caplog, "held")
    assert "'trio-contended'" in held
    assert holder_site in held
    assert waiter_site in held  # the waiter was parked when the long hold ended
    assert len(caplog.records) == 2


@trio_test
async def test_trio_uncontended_lock_is_cheap_and_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="profiles.locks")
    registry = LockRegistry()
    lock = TrioLock("trio-quiet", registry=registry)
    for _ in range(1000):
        async with lock:
            pass
    await lock.acquire()
    lock.release()
    lock.acquire_nowait()
    lock.release()

    stats = only(registry)
    assert stats.acquisitions == 1002
    assert stats.contended == 0
    assert stats.total_wait_ns == stats.max_wait_ns == stats.p99_wait_ns == 0
    assert stats.top_waiters == stats.top_holders == ()
    assert caplog.records == []


@trio_test
async def test_trio_lock_keeps_trio_semantics() -> None:
    registry = LockRegistry()
    lock = TrioLock("trio-semantics", registry=registry)
    with pytest.raises(RuntimeError):
        lock.release()
    await lock.acquire()
    assert lock.locked()
    with pytest.raises(RuntimeError):
        await lock.acquire()  # not reentrant, exactly like trio.Lock

    async def stranger() -> None:
        with pytest.raises(trio.WouldBlock):
            lock.acquire_nowait()
        # A cancelled wait raises Cancelled and is not recorded.
        with trio.move_on_after(0.01) as scope:
            await lock.acquire()
        assert scope.cancelled_caught
        with pytest.raises(RuntimeError):
            lock.release()  # not the owner

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stranger)
    assert lock.locked()
    lock.release()
    assert not lock.locked()

    stats = only(registry)
    assert stats.acquisitions == 1
    assert stats.contended == 0


@trio_test
async def test_trio_long_uncontended_hold_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.locks")
    registry = LockRegistry()
    lock = TrioLock("trio-long-hold", registry=registry)
    async with lock:  # trio-long-hold
        await trio.sleep(HOLD_S)

    (held,) = messages(caplog, "held")
    holder_site = site("trio-long-hold", "test_trio_long_uncontended_hold_warns_once")
    assert holder_site in held
    assert "nobody" in held
    assert messages(caplog, "waited") == []
    stats = only(registry)
    assert stats.top_holders == ((holder_site, 1),)
    assert stats.max_hold_ns >= MIN_NS


def test_thread_contended_wait_and_hold_are_recorded_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.locks")
    registry = LockRegistry()
    lock = ThreadLock("thread-contended", registry=registry)
    holding = threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with lock:  # thread-holder
                holding.set()
                wait_parked(lock)  # the whole hold below is spent with the waiter waiting
                time.sleep(HOLD_S)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    def waiter() -> None:
        try:
            assert holding.wait(WAIT_S)
            assert lock.acquire()  # thread-waiter
            lock.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert not lock.locked()

    stats = only(registry)
    assert stats.acquisitions == 2
    assert stats.contended == 1
    assert stats.slow_waits == 1  # the wait passed the registry's warn_ms
    assert stats.max_wait_ns >= MIN_NS
    assert stats.max_hold_ns >= MIN_NS
    waiter_site = site("thread-waiter", "waiter")
    holder_site = site("thread-holder", "holder")
    assert stats.top_waiters == ((waiter_site, 1),)
    assert stats.top_holders == ((holder_site, 1),)

    (waited,) = messages(caplog, "waited")
    assert "'thread-contended'" in waited
    assert waiter_site in waited
    assert holder_site in waited
    (held,) = messages(caplog, "held")
    assert holder_site in held
    assert waiter_site in held
    assert len(caplog.records) == 2


def test_thread_uncontended_lock_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="profiles.locks")
    registry = LockRegistry()
    lock = ThreadLock("thread-quiet", registry=registry)
    for _ in range(1000):
        with lock:
            pass
    assert lock.acquire(blocking=False)
    assert not lock.acquire(blocking=False)  # a failed try is not an acquisition
    assert not lock.acquire(timeout=0.001)  # nor is a timed-out one
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(ValueError):
        lock.acquire(blocking=False, timeout=1)

    stats = only(registry)
    assert stats.acquisitions == 1001
    assert stats.contended == 0
    assert caplog.records == []


def test_thread_rlock_counts_only_the_outermost_acquisition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.locks")
    registry = LockRegistry()
    lock = ThreadRLock("rlock", registry=registry)
    holding = threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with lock:  # rlock-holder
                with lock:
                    assert lock.acquire(blocking=False)
                    lock.release()
                    holding.set()
                    wait_parked(lock)
                    time.sleep(HOLD_S)
                assert lock.locked()  # still held: one level left
        except BaseException as exc:
            errors.append(exc)

    def waiter() -> None:
        try:
            assert holding.wait(WAIT_S)
            with pytest.raises(RuntimeError):
                lock.release()  # not the owner
            with lock, lock:  # rlock-waiter
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()

    stats = only(registry)
    assert stats.acquisitions == 2
    assert stats.contended == 1
    assert stats.slow_waits == 1  # the wait passed the registry's warn_ms
    assert stats.max_wait_ns >= MIN_NS
    assert stats.max_hold_ns >= MIN_NS
    assert stats.top_waiters == ((site("rlock-waiter", "waiter"), 1),)
    assert stats.top_holders == ((site("rlock-holder", "holder"), 1),)
    assert len(messages(caplog, "waited")) == 1
    assert len(messages(caplog, "held")) == 1


def test_threshold_is_per_registry_and_validated(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="profiles.locks")
    assert REGISTRY.warn_ms == 10.0
    registry = LockRegistry()
    registry.warn_ms = 3_600_000  # an hour: this hold, past the default's 10 ms, stays under
    lock = ThreadLock("lenient", registry=registry)
    with lock:
        time.sleep(HOLD_S)
    assert caplog.records == []
    assert only(registry).max_hold_ns >= MIN_NS
    with pytest.raises(ValueError):
        registry.warn_ms = -1
    with pytest.raises(ValueError):
        registry.warn_ms = float("nan")
    assert registry.warn_ms == 3_600_000


def test_registry_groups_by_name_and_site_survives_gc_and_resets() -> None:
    registry = LockRegistry()
    locks = [ThreadLock("per-item", registry=registry) for _ in range(3)]  # grouped-site
    other = ThreadLock("other", registry=registry)
    for lock in locks:
        with lock:
            pass
    with other:
        pass
    del locks, lock
    gc.collect()

    by_name = {s.name: s for s in registry.statistics()}
    assert by_name.keys() == {"per-item", "other"}
    assert by_name["per-item"].acquisitions == 3
    assert by_name["per-item"].created_at == f"{THIS_FILE}:{line_of('grouped-site')}"
    assert by_name["other"].acquisitions == 1

    registry.reset()
    assert [(s.name, s.acquisitions) for s in registry.statistics()] == [("other", 0)]
    with other:
        pass
    assert only(registry).acquisitions == 1


def test_statistics_are_sorted_by_total_wait() -> None:
    registry = LockRegistry()
    for name, wait_ns in [("small", 10), ("big", 1000), ("none", 0)]:
        recorder = registry._register(object.__new__(ThreadLock), name, "here:1")
        if wait_ns:
            recorder.record_wait(wait_ns, "w", "h")
    assert [s.name for s in registry.statistics()][:2] == ["big", "small"]


def test_measure_overhead_prices_every_kind_of_lock() -> None:
    results = measure_overhead(n=20_000)
    assert set(results) == {
        "threading.Lock",
        "ThreadLock",
        "trio.Lock",
        "TrioLock",
        "TrioLock fast_acquire",
    }
    assert all(value > 0 for value in results.values())


events = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(min_value=0, max_value=10**12)),
        st.integers(min_value=0, max_value=10**12),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(events=events, reservoir=st.integers(min_value=1, max_value=64))
def test_recorder_invariants(events: list[tuple[int | None, int]], reservoir: int) -> None:
    recorder = LockRecorder("prop", "here:1", reservoir=reservoir)
    for wait_ns, hold_ns in events:
        if wait_ns is None:
            recorder.record_acquisition()
        else:
            recorder.record_wait(wait_ns, f"waiter{wait_ns % 5}", "holder")
        recorder.record_hold(hold_ns)

    stats = recorder.snapshot()
    waits = [w for w, _ in events if w is not None]
    assert stats.acquisitions == len(events)
    assert stats.contended == len(waits)
    assert stats.total_wait_ns == sum(waits)
    assert stats.max_wait_ns == max(waits, default=0)
    assert stats.max_hold_ns == max((h for _, h in events), default=0)
    assert stats.mean_wait_ns <= stats.max_wait_ns
    assert stats.p99_wait_ns <= stats.max_wait_ns
    assert sum(count for _, count in stats.top_waiters) <= len(waits)
    assert len(stats.top_waiters) <= 3

    merged = LockRecorder("prop", "here:1", reservoir=reservoir)
    merged.merge(recorder)
    merged.merge(recorder)
    doubled = merged.snapshot()
    assert doubled.acquisitions == 2 * stats.acquisitions
    assert doubled.max_wait_ns == stats.max_wait_ns
    assert doubled.p99_wait_ns <= doubled.max_wait_ns


def test_fast_acquire_takes_a_free_lock_without_a_checkpoint() -> None:
    async def main() -> None:
        fast = TrioLock("fast", registry=LockRegistry(), fast_acquire=True)
        plain = TrioLock("plain", registry=LockRegistry())
        with trio.testing.assert_no_checkpoints():
            async with fast:
                pass
        with trio.testing.assert_checkpoints():
            async with plain:
                pass

        # Held: a fast lock parks like any other, and the waiter gets it on release.
        order: list[str] = []

        async def waiter() -> None:
            async with fast:
                order.append("waiter")

        async with trio.open_nursery() as nursery, fast:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            order.append("holder")
        assert order == ["holder", "waiter"]
        assert fast._recorder.snapshot().contended == 1

    trio.run(main)


def test_locks_made_and_dropped_by_the_thousand_do_not_pile_up_unasked() -> None:
    """A node makes locks per stream and may never be asked for statistics: dead
    locks are folded into their group as new ones are registered."""
    registry = LockRegistry()
    for _ in range(5000):
        with ThreadLock("per-stream", registry=registry):
            pass
    gc.collect()
    ThreadLock("one more", registry=registry)
    live = sum(len(recorders) for recorders in registry._live.values())
    assert live + len(registry._retired) < 600, (live, len(registry._retired))
    by_name = {s.name: s for s in registry.statistics()}
    assert by_name["per-stream"].acquisitions == 5000
