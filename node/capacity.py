"""Capacity: the CPU, memory and slots this node offers, and who holds what.

A bid reserves the shard's resources and a slot; a rejected bid, an unanswered
one, or a finished run releases them. A node without room for a shard does not
bid on it. Defaults come from psutil (all cores, all memory, a slot per core);
flags override them. Not thread-safe: the node's trio loop only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

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
        self._reservations = 0
        self._refusals = 0

    def fits_ever(self, resources: Resources) -> bool:
        """Whether the shard could run here at all, on an idle node."""
        return resources.cpu <= self.cpu and resources.memory <= self.memory

    def try_reserve(self, job_id: str, shard: int, resources: Resources = _NOTHING) -> bool:
        """Reserve for (job, shard); False when full. Idempotent per key."""
        key = (job_id, shard)
        if key in self._held:
            return True
        cpu_used = sum(r.cpu for r in self._held.values())
        memory_used = sum(r.memory for r in self._held.values())
        if (
            len(self._held) >= self.slots
            or cpu_used + resources.cpu > self.cpu + 1e-9
            or memory_used + resources.memory > self.memory
        ):
            self._refusals += 1
            return False
        self._held[key] = resources
        self._reservations += 1
        return True

    def release(self, job_id: str, shard: int) -> None:
        """Give the reservation back; releasing what is not held does nothing."""
        self._held.pop((job_id, shard), None)

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
        )
