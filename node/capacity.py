"""Capacity: how many shards this node may run at once, and who holds a slot.

A bid reserves a slot; a rejected bid, a finished run or a timeout releases it.
A full node does not bid. (CPU and memory accounting comes with the bidder work.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CapacityStatistics:
    slots: int
    reserved: int
    reservations: int
    refusals: int

    @property
    def free(self) -> int:
        return self.slots - self.reserved


class Capacity:
    """Slot accounting keyed by (job id, shard). Not thread-safe: trio loop only."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self._held: set[tuple[str, int]] = set()
        self._reservations = 0
        self._refusals = 0

    def try_reserve(self, job_id: str, shard: int) -> bool:
        """Take a slot for (job, shard); False when full. Idempotent per key."""
        key = (job_id, shard)
        if key in self._held:
            return True
        if len(self._held) >= self.slots:
            self._refusals += 1
            return False
        self._held.add(key)
        self._reservations += 1
        return True

    def release(self, job_id: str, shard: int) -> None:
        """Give the slot back; releasing what is not held does nothing."""
        self._held.discard((job_id, shard))

    def holds(self, job_id: str, shard: int) -> bool:
        return (job_id, shard) in self._held

    def statistics(self) -> CapacityStatistics:
        return CapacityStatistics(
            slots=self.slots,
            reserved=len(self._held),
            reservations=self._reservations,
            refusals=self._refusals,
        )
