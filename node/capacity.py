"""Capacity: the CPU, memory and slots this node offers, and who holds what.

A bid reserves the shard's resources and a slot; a rejected bid, an unanswered
one, or a finished run releases them. A node without room for a shard waits its
turn (:meth:`Capacity.reserve`, first come first served) before it bids.
Defaults come from psutil (all cores, all memory, a slot per core); flags
override them. Not thread-safe: the node's trio loop only.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

import psutil
import trio

from node.models import Resources

_NOTHING = Resources()


@dataclass(frozen=True)
class CapacityStatistics:
    slots: int
    reserved: int
    cpu: float
    cpu_reserved: float
    memory: int
    memory_reserved: int
    reservations: int
    refusals: int
    waiting: int

    @property
    def free(self) -> int:
        return self.slots - self.reserved


def default_slots() -> int:
    return max(1, os.cpu_count() or 1)


class Capacity:
    """Reservations keyed by (job id, shard)."""

    def __init__(
        self, slots: int | None = None, *, cpu: float | None = None, memory: int | None = None
    ) -> None:
        self.slots = default_slots() if slots is None else slots
        self.cpu = float(os.cpu_count() or 1) if cpu is None else cpu
        self.memory = psutil.virtual_memory().total if memory is None else memory
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        if self.cpu <= 0 or self.memory <= 0:
            raise ValueError("cpu and memory must be positive")
        self._held: dict[tuple[str, int], Resources] = {}
        self._waiting: deque[_Waiter] = deque()
        self._reservations = 0
        self._refusals = 0

    def fits_ever(self, resources: Resources) -> bool:
        """Whether the shard could run here at all, on an idle node."""
        return resources.cpu <= self.cpu and resources.memory <= self.memory

    def _fits_now(self, resources: Resources) -> bool:
        cpu_used = sum(r.cpu for r in self._held.values())
        memory_used = sum(r.memory for r in self._held.values())
        return (
            len(self._held) < self.slots
            and cpu_used + resources.cpu <= self.cpu + 1e-9
            and memory_used + resources.memory <= self.memory
        )

    def _hold(self, key: tuple[str, int], resources: Resources) -> None:
        self._held[key] = resources
        self._reservations += 1

    def try_reserve(self, job_id: str, shard: int, resources: Resources = _NOTHING) -> bool:
        """Reserve for (job, shard) now; False when full or others wait their turn.
        Idempotent per key."""
        key = (job_id, shard)
        if key in self._held:
            return True
        if self._waiting or not self._fits_now(resources):
            self._refusals += 1
            return False
        self._hold(key, resources)
        return True

    async def reserve(self, job_id: str, shard: int, resources: Resources = _NOTHING) -> None:
        """Reserve for (job, shard), waiting for room if need be.

        Waiters are served in the order they came. Cancelling the wait (e.g. a
        ``move_on_after``) leaves nothing reserved, even if room came just then.
        Raises ValueError if the shard could never fit on this node.
        """
        if not self.fits_ever(resources):
            raise ValueError(
                f"{resources} exceeds this node's cpu {self.cpu} and memory {self.memory}"
            )
        if self.try_reserve(job_id, shard, resources):
            return
        waiter = _Waiter((job_id, shard), resources)
        self._waiting.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(job_id, shard)
            else:
                self._waiting.remove(waiter)
                self._serve_waiters()  # a big waiter gone may let smaller ones in
            raise

    def _serve_waiters(self) -> None:
        while self._waiting and self._fits_now(self._waiting[0].resources):
            waiter = self._waiting.popleft()
            self._hold(waiter.key, waiter.resources)
            waiter.granted.set()

    def release(self, job_id: str, shard: int) -> None:
        """Give the reservation back (to the first waiter it lets in); releasing
        what is not held does nothing."""
        if self._held.pop((job_id, shard), None) is not None:
            self._serve_waiters()

    def holds(self, job_id: str, shard: int) -> bool:
        return (job_id, shard) in self._held

    def statistics(self) -> CapacityStatistics:
        return CapacityStatistics(
            slots=self.slots,
            reserved=len(self._held),
            cpu=self.cpu,
            cpu_reserved=round(sum(r.cpu for r in self._held.values()), 3),
            memory=self.memory,
            memory_reserved=sum(r.memory for r in self._held.values()),
            reservations=self._reservations,
            refusals=self._refusals,
            waiting=len(self._waiting),
        )


@dataclass(eq=False)
class _Waiter:
    key: tuple[str, int]
    resources: Resources
    granted: trio.Event = field(default_factory=trio.Event)
