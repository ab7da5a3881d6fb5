"""A requester's record of the nodes that ran its jobs (README, verification:
credibility).

After each verdict that accepted a result, every proposer of the shard either
agreed with it or was caught: its result differed from the accepted one. The
record is the requester's own (it trusts no other node's word), kept in its store
so a restart keeps it.

How it is used (the rule, after Sarmenta's credibility-based fault tolerance,
simplified): a node caught is not offered work by this requester for
:data:`EXCLUDE_S`, and its bids are turned down; spot checks and escalation runs
go first to the nodes with the longest clean record. Votes are not weighted: a
weight would let colluders that behave for a while outvote an honest minority
with fewer nodes, and the margin rule is stated in plain votes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# How long a node caught forging gets no work from the requester that caught it.
EXCLUDE_S = 1800.0
# Agreements with accepted results (and never caught) that make a node trusted.
TRUSTED_AFTER = 3

Row = tuple[str, int, int, float | None]
"""A node's record as the store keeps it: ``(node, agreed, caught, caught_at)``."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node's record: proposals that ``agreed`` with the accepted result, that
    were ``caught`` differing from it, and the wall-clock time it was last caught."""

    agreed: int = 0
    caught: int = 0
    caught_at: float | None = None

    @property
    def proposals(self) -> int:
        return self.agreed + self.caught

    def excluded_until(self, exclude_s: float = EXCLUDE_S) -> float | None:
        return None if self.caught_at is None else self.caught_at + exclude_s

    @property
    def trusted(self) -> bool:
        return self.caught == 0 and self.agreed >= TRUSTED_AFTER


@dataclass(frozen=True, slots=True)
class CredibilityStatistics:
    """``known``: nodes with a record; ``trusted``: of them, never caught and with
    at least :data:`TRUSTED_AFTER` agreements; ``excluded``: caught lately, so
    offered nothing now; ``agreed``/``caught``: proposals counted either way."""

    known: int
    trusted: int
    excluded: int
    agreed: int
    caught: int


class Credibility:
    """The record of every node this requester has a verdict on. Not thread-safe:
    the requester's trio loop owns it; the store persists what :meth:`record`
    returns."""

    def __init__(self, rows: Iterable[Row] = (), *, exclude_s: float = EXCLUDE_S) -> None:
        if exclude_s < 0:
            raise ValueError(f"exclude_s must not be negative, got {exclude_s}")
        self._exclude_s = exclude_s
        self._records = {node: NodeRecord(a, d, c) for node, a, d, c in rows}

    def of(self, node: str) -> NodeRecord:
        return self._records.get(node, NodeRecord())

    def is_new(self, node: str) -> bool:
        """No verdict of this requester counted a proposal of ``node`` yet."""
        return self.of(node).proposals == 0

    def excluded(self, node: str, now: float) -> bool:
        """Caught within :data:`EXCLUDE_S` before ``now`` (wall clock)."""
        until = self.of(node).excluded_until(self._exclude_s)
        return until is not None and now < until

    def excluded_nodes(self, now: float) -> frozenset[str]:
        return frozenset(n for n in self._records if self.excluded(n, now))

    def record(self, agreed: Iterable[str], caught: Iterable[str], now: float) -> list[Row]:
        """Count one verdict: ``agreed`` gave the accepted result, ``caught`` another.
        Returns the changed rows, for the store."""
        changed = []
        for node, caught_now in [*((n, False) for n in agreed), *((n, True) for n in caught)]:
            old = self.of(node)
            new = (
                NodeRecord(old.agreed, old.caught + 1, now)
                if caught_now
                else NodeRecord(old.agreed + 1, old.caught, old.caught_at)
            )
            self._records[node] = new
            changed.append((node, new.agreed, new.caught, new.caught_at))
        return changed

    def rank(self, nodes: Sequence[str]) -> list[str]:
        """``nodes`` with the best record first (never caught, then most agreements);
        ties keep their order."""

        def key(node: str) -> tuple[int, int]:
            record = self.of(node)
            return (record.caught, -record.agreed)

        return sorted(nodes, key=key)

    def describe(self, now: float) -> dict[str, dict[str, object]]:
        """Every record, for ``GET /api/v1/node``: node -> counts, and until when it
        is excluded (wall clock) if it is."""
        return {
            node: {
                "agreed": record.agreed,
                "caught": record.caught,
                "excluded_until": record.excluded_until(self._exclude_s)
                if self.excluded(node, now)
                else None,
            }
            for node, record in sorted(self._records.items())
        }

    def statistics(self, now: float) -> CredibilityStatistics:
        records = self._records.values()
        return CredibilityStatistics(
            known=len(self._records),
            trusted=sum(r.trusted for r in records),
            excluded=len(self.excluded_nodes(now)),
            agreed=sum(r.agreed for r in records),
            caught=sum(r.caught for r in records),
        )
