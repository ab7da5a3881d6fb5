"""The Bidder seam: whether, and after how long, this node bids on a shard.

Chosen per node by name (``--bidder``). Every implementation is a pure function
of (job, shard, the live members as one node sees them), so ``devstack simulate``
drives the very code the nodes run: :meth:`Bidder.delays` gives every member's
delay at once, and a node takes its own from it (:meth:`Bidder.bid_delay`).

- ``hash-space`` (default, README, who bids): a rendezvous score per (node, job, shard)
  ranks the nodes differently for every job; a node of rank ``r`` among the live
  members it knows waits ``floor(r / c) * step`` and never drops a job: a node in
  a late band still bids unless it has heard ``BiddingClosed`` by then. The rank
  is counted among the members (anti-entropy gives every node the member list),
  not estimated as ``score * N``: with an estimate, band 0 holds a Poisson number
  of nodes, empty 37% of the time at c = 1, which costs 1.58 bids per job and a
  band step of delay whenever it is empty. Views that differ for a moment (a node
  just joined or left) cost at most an extra bid or one band step.
- ``bacalhau-2022``: the seed's rule exactly (FNV-1a 32-bit ids, absolute
  difference, chunks of ``c/N`` of the hash space, 1 s per chunk, dropped beyond
  one chunk), kept to compare against.
- ``all``: every node with capacity bids at once.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Sequence

import xxhash

from node.models import Job

DEFAULT_STEP_S = 0.2
_U64 = float(1 << 64)


class Bidder(abc.ABC):
    name: str

    def __init__(self, step: float = DEFAULT_STEP_S) -> None:
        """``step``: seconds between bands, about two gossip latencies (bidders that
        have no bands ignore it)."""
        if step < 0:
            raise ValueError(f"step must not be negative, got {step}")
        self.step = step

    @abc.abstractmethod
    def delays(
        self, job: Job, shard: int, members: Sequence[str], step: float | None = None
    ) -> list[float | None]:
        """Each member's seconds to wait before bidding (None: it does not bid), in
        the order of ``members``: the live network as one node sees it, itself
        included. ``step`` overrides the seconds between bands (a node's live
        :class:`~node.bandstep.BandStep`). Raises ValueError if ``members`` is
        empty or repeats a node."""

    def bid_delay(
        self,
        node_id: str,
        job: Job,
        shard: int,
        members: Sequence[str],
        step: float | None = None,
    ) -> float | None:
        """``node_id``'s own delay, given the live members it knows (it is counted
        among them whether or not ``members`` lists it)."""
        if node_id not in members:
            members = [*members, node_id]
        return self.delays(job, shard, members, step)[list(members).index(node_id)]


def _check_members(members: Sequence[str]) -> None:
    if not members:
        raise ValueError("members must list at least the node itself")
    if len(set(members)) != len(members):
        raise ValueError("members must not repeat a node")


class _PerNodeBidder(Bidder):
    """A bidder whose rule needs only the node, the job and the network's size."""

    def delays(
        self, job: Job, shard: int, members: Sequence[str], step: float | None = None
    ) -> list[float | None]:
        _check_members(members)
        size = len(members)
        return [self.delay_of(node, job, shard, size) for node in members]

    @abc.abstractmethod
    def delay_of(self, node_id: str, job: Job, shard: int, network_size: int) -> float | None:
        """Seconds to wait before bidding, or None to not bid at all."""


def rendezvous_score(node_id: str, job_id: str, shard: int) -> float:
    """xxh64 of (node, job, shard) mapped to [0, 1): each job orders the nodes afresh."""
    digest = xxhash.xxh64_intdigest(f"{node_id}\x00{job_id}\x00{shard}".encode())
    return digest / _U64


def band(rank: int, wanted: int) -> int:
    """The band of the node of ``rank`` (0 = lowest score): ``rank // c``; band 0
    bids at once."""
    return rank // max(1, wanted)


def rendezvous_ranks(job_id: str, shard: int, members: Sequence[str]) -> list[int]:
    """Each member's rank (0 = lowest score) in the job's own ordering; ties in
    score, which xxh64 makes vanishingly rare, go by node id."""
    _check_members(members)
    order = sorted(
        range(len(members)),
        key=lambda i: (rendezvous_score(members[i], job_id, shard), members[i]),
    )
    ranks = [0] * len(members)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def offer_order(job_id: str, shard: int, members: Sequence[str]) -> list[str]:
    """``members`` from the lowest rendezvous rank to the highest: the order in which a
    requester offers the shard (README, dispatch), the same order in which the hash-space
    bidder's bands let nodes bid. Raises ValueError as :func:`rendezvous_ranks`."""
    ordered = [""] * len(members)
    for member, rank in zip(members, rendezvous_ranks(job_id, shard, members), strict=True):
        ordered[rank] = member
    return ordered


class HashSpaceBidder(Bidder):
    """README, who bids: the ``c`` lowest-ranked nodes bid at once; each later band of
    ``c`` covers the busy or missing nodes of the bands before it."""

    name = "hash-space"

    def delays(
        self, job: Job, shard: int, members: Sequence[str], step: float | None = None
    ) -> list[float | None]:
        wanted = job.spec.deal.wanted_bids
        step = self.step if step is None else step
        return [band(r, wanted) * step for r in rendezvous_ranks(job.id, shard, members)]


def fnv1a_32(text: str) -> int:
    """FNV-1a, 32-bit, of the UTF-8 bytes (Go's ``hash/fnv`` New32a)."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _f32(x: float) -> float:
    """Round to float32, as the seed's Go arithmetic does at every step."""
    return struct.unpack("f", struct.pack("f", x))[0]


def seed_delay_ms(
    network_size: int, node_id: str, job_id: str, concurrency: int
) -> tuple[int, bool]:
    """The seed's ``CalculateJobNodeDistanceDelay``: (delay in ms, whether to bid).

    ``chunk = int(float32(c) / float32(N) * 4294967295)``, ``delay = distance //
    chunk * 1000``, and a job whose delay exceeds 1000 ms is dropped.
    """
    distance = abs(fnv1a_32(node_id) - fnv1a_32(job_id))
    chunk = int(_f32(_f32(_f32(concurrency) / _f32(network_size)) * _f32(4294967295)))
    delay = (distance // max(1, chunk)) * 1000
    return delay, delay <= 1000


class Bacalhau2022Bidder(_PerNodeBidder):
    """The seed's rule, unchanged (including its drops), for comparison."""

    name = "bacalhau-2022"

    def delay_of(self, node_id: str, job: Job, shard: int, network_size: int) -> float | None:
        delay_ms, bids = seed_delay_ms(
            max(1, network_size), node_id, job.id, job.spec.deal.concurrency
        )
        return delay_ms / 1000 if bids else None


class AllBidder(_PerNodeBidder):
    """Every node with capacity bids at once: O(network) bids per job."""

    name = "all"

    def delay_of(self, node_id: str, job: Job, shard: int, network_size: int) -> float:
        return 0.0


BIDDERS: dict[str, type[Bidder]] = {
    HashSpaceBidder.name: HashSpaceBidder,
    Bacalhau2022Bidder.name: Bacalhau2022Bidder,
    AllBidder.name: AllBidder,
}
DEFAULT_BIDDER = HashSpaceBidder.name


def make_bidder(name: str, *, step: float = DEFAULT_STEP_S) -> Bidder:
    """The bidder called ``name``; raises ValueError listing the known names."""
    try:
        return BIDDERS[name](step)
    except KeyError:
        raise ValueError(f"unknown bidder {name!r}; known: {', '.join(BIDDERS)}") from None
