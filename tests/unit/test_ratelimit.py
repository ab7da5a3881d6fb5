"""profiles.ratelimit: one warning per key per interval, the rest counted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from profiles.ratelimit import WarningLimiter, suppressed_note

S = 1_000_000_000


def test_first_admitted_then_held_back_then_counted() -> None:
    limiter = WarningLimiter(1.0)
    assert limiter.admit("a", 0) == 0
    assert limiter.admit("a", S // 2) is None
    assert limiter.admit("b", S // 2) == 0  # keys are independent
    assert limiter.admit("a", S - 1) is None
    assert limiter.admit("a", S) == 2
    assert limiter.admit("a", S + 1) is None
    limiter.clear()
    assert limiter.admit("a", S + 2) == 0


@given(hs.lists(hs.integers(min_value=0, max_value=10 * S), max_size=200))
def test_every_warning_is_admitted_or_counted(times: list[int]) -> None:
    limiter = WarningLimiter(1.0)
    admitted, reported = 0, 0
    last_admitted: int | None = None
    for t in sorted(times):
        held = limiter.admit("k", t)
        if held is not None:
            assert last_admitted is None or t - last_admitted >= S
            admitted, reported, last_admitted = admitted + 1, reported + held, t
    pending = limiter.admit("k", 100 * S)
    assert pending is not None
    assert admitted + reported + pending == len(times)


def test_forgets_past_max_keys() -> None:
    limiter = WarningLimiter(1.0, max_keys=2)
    assert limiter.admit("a", 0) == 0 and limiter.admit("b", 0) == 0
    assert limiter.admit("c", 0) == 0  # memory dropped to make room
    assert limiter.admit("a", 1) == 0  # an early warning: the cost of forgetting


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        WarningLimiter(-1)
    with pytest.raises(ValueError, match="max_keys"):
        WarningLimiter(1, max_keys=0)


def test_note() -> None:
    assert suppressed_note(0) == ""
    assert suppressed_note(3) == "; 3 similar warning(s) suppressed"
