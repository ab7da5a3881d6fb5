"""Capacity: slots, CPU and memory reserved per shard; a full node refuses."""

from __future__ import annotations

import pytest
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
