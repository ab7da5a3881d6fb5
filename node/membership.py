"""Live network size: which nodes have been heard on the job network lately.

Every node gossips a small :class:`~node.messages.NodeAlive` beacon: a few quickly
after it joins the mesh (so a new cluster converges in seconds), then once a
period with jitter. A peer not heard for ``ttl`` seconds is forgotten, so the
size decays when nodes go away. The size is never hard-coded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MembershipStatistics:
    network_size: int
    beacons_seen: int
    beacons_sent: int


class Membership:
    """Peers heard on the job network within ``ttl`` seconds, plus this node."""

    def __init__(
        self,
        self_id: str,
        *,
        period: float = 15.0,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.self_id = self_id
        self.period = period
        self.ttl = ttl if ttl is not None else 3.5 * period
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        self._apis: dict[str, str] = {}
        self._seen = 0
        self._sent = 0

    def heard(self, peer: str, api: str = "") -> bool:
        """Record a beacon from ``peer``; returns True if the peer is new (or was forgotten)."""
        now = self._clock()
        last = self._last_seen.get(peer)
        self._last_seen[peer] = now
        if api:
            self._apis[peer] = api
        self._seen += 1
        return last is None or now - last > self.ttl

    def sent(self) -> None:
        self._sent += 1

    def live_peers(self) -> dict[str, str]:
        """Live peers (other than this node) and their API URLs where known."""
        cutoff = self._clock() - self.ttl
        for peer in [p for p, t in self._last_seen.items() if t < cutoff]:
            del self._last_seen[peer]
            self._apis.pop(peer, None)
        return {p: self._apis.get(p, "") for p in self._last_seen if p != self.self_id}

    @property
    def size(self) -> int:
        return 1 + len(self.live_peers())

    def beacon_delays(self) -> list[float]:
        """Delays between the first beacons after joining: quick, then the period."""
        return [0.0, 1.0, 3.0]

    def next_delay(self) -> float:
        return self.period * random.uniform(0.8, 1.2)

    def statistics(self) -> MembershipStatistics:
        return MembershipStatistics(
            network_size=self.size, beacons_seen=self._seen, beacons_sent=self._sent
        )
