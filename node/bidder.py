"""The Bidder seam: whether, and after how long, this node bids on a shard.

Chosen per node by name (``--bidder``). Only ``all`` exists so far (every node
with capacity bids at once); the hash-space bidder of DESIGN §6 slots in here.
"""

from __future__ import annotations

import abc

from node.models import Job


class Bidder(abc.ABC):
    name: str

    @abc.abstractmethod
    def bid_delay(self, node_id: str, job: Job, shard: int, network_size: int) -> float | None:
        """Seconds to wait before bidding, or None to not bid at all."""


class AllBidder(Bidder):
    """Every node with capacity bids at once: O(network) bids per job."""

    name = "all"

    def bid_delay(self, node_id: str, job: Job, shard: int, network_size: int) -> float | None:
        return 0.0


BIDDERS: dict[str, type[Bidder]] = {AllBidder.name: AllBidder}


def make_bidder(name: str) -> Bidder:
    try:
        return BIDDERS[name]()
    except KeyError:
        raise ValueError(f"unknown bidder {name!r}; known: {', '.join(BIDDERS)}") from None
