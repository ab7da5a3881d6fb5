"""Quantiles of measured figures, the two ways this project needs them.

- :func:`nearest_rank`: always one of the observed values (so a p99 never exceeds the
  max); what the lock, stall and latency statistics report.
- :func:`percentile`: interpolates linearly between ranks; what the benchmarks and the
  simulator print.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T", int, float)


def nearest_rank(ordered: Sequence[T], q: float, default: T) -> T:
    """The smallest of ``ordered`` (sorted ascending) that at least a ``q`` (0-1) share
    of the values are at or below; ``default`` when there are none."""
    if not ordered:
        return default
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def percentile(values: Sequence[float], q: float, *, empty: float | None = None) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between ranks.

    Raises ValueError for no values, unless ``empty`` says what to return then.
    """
    if not values:
        if empty is None:
            raise ValueError("percentile of no values")
        return empty
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
