"""Capacity: slots, CPU and memory reserved per shard; a full node refuses."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from node.capacity import Capacity
from node.models import Resources

pytestmark = pytest.mark.timeout(60)


def test_defaults_come_from_the_machine() -> None:
    stats = Capacity().statistics()
    assert stats.slots >= 1 and stats.cpu >= 1 and stats.memory > 0
    assert stats.reserved == 0


def test_slots_cpu_and_memory_each_bound_reservations() -> None:
    cap = Capacity(2, cpu=1.0, memory=100)
    assert cap.try_reserve("a", 0, Resources(cpu=0.6, memory=10))
    assert not cap.try_reserve("b", 0, Resources(cpu=0.6))  # CPU
    assert not cap.try_reserve("b", 0, Resources(memory=91))  # memory
    assert cap.try_reserve("b", 0, Resources(cpu=0.4, memory=90))
    assert not cap.try_reserve("c", 0)  # slots
    stats = cap.statistics()
    assert (stats.reserved, stats.cpu_reserved, stats.memory_reserved) == (2, 1.0, 100)
    assert stats.refusals == 3
    cap.release("a", 0)
    assert cap.try_reserve("c", 0)


def test_reserve_is_idempotent_and_release_of_unknown_is_harmless() -> None:
    cap = Capacity(1, cpu=1, memory=1)
    assert cap.try_reserve("a", 0)
    assert cap.try_reserve("a", 0)
    assert cap.statistics().reservations == 1
    cap.release("zzz", 3)
    assert cap.holds("a", 0)


def test_fits_ever() -> None:
    cap = Capacity(1, cpu=2, memory=1 << 30)
    assert cap.fits_ever(Resources(cpu=2, memory=1 << 30))
    assert not cap.fits_ever(Resources(cpu=3))
    assert not cap.fits_ever(Resources(memory=(1 << 30) + 1))


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="slots"):
        Capacity(0)
    with pytest.raises(ValueError, match="positive"):
        Capacity(1, cpu=0)


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.floats(0, 1), st.integers(0, 50)),
        max_size=60,
    )
)
def test_reservations_never_exceed_what_is_offered(ops: list[tuple[bool, int, float, int]]) -> None:
    cap = Capacity(3, cpu=2.0, memory=100)
    for reserve, key, cpu, memory in ops:
        if reserve:
            cap.try_reserve(str(key), 0, Resources(cpu=cpu, memory=memory))
        else:
            cap.release(str(key), 0)
        stats = cap.statistics()
        assert stats.reserved <= 3
        assert stats.cpu_reserved <= 2.0 + 1e-6
        assert stats.memory_reserved <= 100


# -- waiting for room (a full node queues its bids) ---------------------------------


def test_waiters_are_served_in_the_order_they_came() -> None:
    cap = Capacity(1, cpu=4, memory=100)
    served: list[str] = []

    async def main() -> None:
        assert cap.try_reserve("running", 0)
        async with trio.open_nursery() as nursery:
            for name in ("first", "second", "third"):

                async def wait(name: str = name) -> None:
                    await cap.reserve(name, 0)
                    served.append(name)

                nursery.start_soon(wait)
                await trio.testing.wait_all_tasks_blocked()
            assert cap.statistics().waiting == 3
            assert not cap.try_reserve("queue-jumper", 0)  # others wait their turn
            for done in ("running", "first", "second"):
                cap.release(done, 0)
                await trio.testing.wait_all_tasks_blocked()
        assert served == ["first", "second", "third"]
        assert cap.holds("third", 0) and cap.statistics().reserved == 1

    trio.run(main)


def test_a_cancelled_wait_holds_nothing_and_lets_the_next_in() -> None:
    cap = Capacity(2, cpu=1.0, memory=100)

    async def main() -> None:
        assert cap.try_reserve("a", 0, Resources(cpu=0.5))
        assert cap.try_reserve("b", 0, Resources(cpu=0.5))
        small_served = trio.Event()

        async def small() -> None:
            await cap.reserve("small", 0, Resources(cpu=0.5))
            small_served.set()

        async with trio.open_nursery() as nursery:
            with trio.move_on_after(0.01) as big_wait:
                nursery.start_soon(small)  # queued behind "big"
                await cap.reserve("big", 0, Resources(cpu=1.0))
            assert big_wait.cancelled_caught
            assert not cap.holds("big", 0)
            cap.release("a", 0)  # room for "small" only: it is no longer behind "big"
            await small_served.wait()
        assert cap.statistics().waiting == 0 and cap.statistics().reserved == 2

    trio.run(main)


def test_reserve_refuses_what_could_never_fit() -> None:
    cap = Capacity(1, cpu=1.0, memory=100)
    with pytest.raises(ValueError, match="exceeds this node's cpu"):
        trio.run(cap.reserve, "huge", 0, Resources(cpu=2.0))
