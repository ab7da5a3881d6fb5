"""The live band step: seconds between bidding bands, following what this node sees.

README, who bids asks for a step of "about two gossip latencies": long enough that a
later band hears ``BiddingClosed`` before its turn when the first band's bids
went through. A fixed step breaks under load, and makes load worse: as gossip
slows, later bands fire before the close reaches them, their extra bids add
load, gossip slows further. So each node measures, for the jobs it hears of,
the time from a job's announce to its ``BiddingClosed`` (the first band's bid,
the requester's accept, the close's gossip: about two latencies) and keeps the
step at ``factor`` times its moving average, never below the configured step
(so an idle network bids as fast as configured) nor above ``ceiling``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_FACTOR = 1.5
DEFAULT_CEILING_S = 2.0
# Weight of each new observation in the moving average.
DEFAULT_WEIGHT = 0.2


@dataclass(frozen=True)
class BandStepStatistics:
    step_s: float
    floor_s: float
    close_delay_s: float | None  # moving average; None until a close was seen
    samples: int


class BandStep:
    """Not thread-safe: the node's trio loop only."""

    def __init__(
        self,
        floor: float,
        *,
        factor: float = DEFAULT_FACTOR,
        ceiling: float = DEFAULT_CEILING_S,
        weight: float = DEFAULT_WEIGHT,
    ) -> None:
        """Raises ValueError for a negative floor, a factor or weight out of
        range, or a ceiling below the floor."""
        if floor < 0:
            raise ValueError(f"floor must not be negative, got {floor}")
        if factor <= 0 or not 0 < weight <= 1:
            raise ValueError(f"factor must be above 0 and weight in (0, 1], got {factor}, {weight}")
        if ceiling < floor:
            raise ValueError(f"ceiling {ceiling} is below floor {floor}")
        self.floor = floor
        self.factor = factor
        self.ceiling = ceiling
        self.weight = weight
        self._average: float | None = None
        self._samples = 0

    def observe(self, close_delay: float) -> None:
        """Take one job's delay from its announce to its ``BiddingClosed``, in
        seconds; a negative one (a clock hiccup) is ignored."""
        if close_delay < 0:
            return
        if self._average is None:
            self._average = close_delay
        else:
            self._average += self.weight * (close_delay - self._average)
        self._samples += 1

    @property
    def current(self) -> float:
        if self._average is None:
            return self.floor
        return min(self.ceiling, max(self.floor, self.factor * self._average))

    def statistics(self) -> BandStepStatistics:
        return BandStepStatistics(
            step_s=round(self.current, 4),
            floor_s=self.floor,
            close_delay_s=None if self._average is None else round(self._average, 4),
            samples=self._samples,
        )
