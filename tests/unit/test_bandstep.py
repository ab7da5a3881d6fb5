"""The live band step: follows announce-to-close delays, within its floor and ceiling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.bandstep import BandStep

pytestmark = pytest.mark.timeout(60)


def test_starts_at_the_configured_step() -> None:
    step = BandStep(0.2)
    assert step.current == 0.2
    stats = step.statistics()
    assert (stats.step_s, stats.floor_s, stats.close_delay_s, stats.samples) == (0.2, 0.2, None, 0)


def test_follows_slow_closes_and_comes_back_when_they_are_fast_again() -> None:
    step = BandStep(0.2, factor=1.5, ceiling=2.0, weight=0.5)
    step.observe(0.4)
    assert step.current == pytest.approx(0.6)
    for _ in range(20):
        step.observe(1.0)
    assert step.current == pytest.approx(1.5, rel=1e-3)
    for _ in range(40):
        step.observe(0.01)
    assert step.current == 0.2  # never below the configured step
    assert step.statistics().samples == 61


def test_ceiling_bounds_a_network_in_trouble() -> None:
    step = BandStep(0.2, ceiling=2.0)
    step.observe(30.0)
    assert step.current == 2.0


def test_negative_delay_is_ignored() -> None:
    step = BandStep(0.2)
    step.observe(-1.0)
    assert step.statistics().samples == 0 and step.current == 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"floor": -0.1}, "floor"),
        ({"floor": 0.2, "factor": 0}, "factor"),
        ({"floor": 0.2, "weight": 0}, "weight"),
        ({"floor": 0.2, "weight": 1.5}, "weight"),
        ({"floor": 3.0, "ceiling": 2.0}, "ceiling"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BandStep(**kwargs)


@given(
    floor=st.floats(0, 1),
    delays=st.lists(st.floats(0, 100, allow_nan=False), max_size=50),
)
def test_step_always_within_floor_and_ceiling(floor: float, delays: list[float]) -> None:
    step = BandStep(floor, ceiling=max(floor, 2.0))
    for delay in delays:
        step.observe(delay)
        assert floor <= step.current <= max(floor, 2.0)
    if delays and floor == 0:
        # with no floor in the way, the step is the factor times a convex
        # combination of what was observed, capped
        expected_high = min(2.0, step.factor * max(delays))
        assert step.current <= expected_high + 1e-9
