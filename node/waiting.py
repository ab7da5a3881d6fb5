"""Why a shard waits: what its requester tried, and the one line that says it.

The requester records, per shard and attempt, each offered node's answer
(:class:`ShardWait`); :func:`why` turns that into the short line ``devstack
describe`` and the TUI show while a job is not running yet ("queued: 10 of 10
nodes full, position 3"; "no node has image foo:1 (asked 12)"). Pure: no I/O, no
clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: What an offered node answered: a bid, a decline's reason, or nothing yet.
ANSWERS = ("bid", "full", "no_image", "too_big", "ran_before", "unreachable", "no_answer")


@dataclass
class ShardWait:
    """One shard's attempt to find nodes, as its requester saw it.

    ``answers``: each offered node's answer (one of :data:`ANSWERS`); ``known_full``:
    the nodes the requester knows to be full (some not offered this time, for that);
    ``round_bids``: the bids each gossip round (announced once offers ran out)
    brought; ``queue``: (position, length) while it waits in line.
    """

    shard: int
    image: str = ""
    engine: str = "docker"
    wanted: int = 1
    network_size: int = 0
    answers: dict[str, str] = field(default_factory=dict)
    known_full: int = 0
    round_bids: tuple[int, ...] = ()
    queue: tuple[int, int] | None = None

    @property
    def gossip_rounds(self) -> int:
        return len(self.round_bids)

    def counts(self) -> dict[str, int]:
        """How many offered nodes answered each way (every answer named, zeros too)."""
        counted = Counter(self.answers.values())
        return {answer: counted[answer] for answer in ANSWERS}

    def document(self) -> dict[str, Any]:
        """The structured form (``describe --json``), with its :func:`why` line."""
        return {
            "shard": self.shard,
            "why": why(self),
            "offered": len(self.answers),
            "answers": self.counts(),
            "offers": dict(self.answers),
            "gossip_rounds": self.gossip_rounds,
            "round_bids": list(self.round_bids),
            "queue_position": None if self.queue is None else self.queue[0],
            "queue_length": None if self.queue is None else self.queue[1],
            "network_size": self.network_size,
        }


def why(wait: ShardWait) -> str:
    """The one line that says why ``wait``'s shard does not run yet."""
    counts = wait.counts()
    asked = len(wait.answers)
    if wait.queue is not None:
        position, length = wait.queue
        full = max(counts["full"], wait.known_full)
        return (
            f"queued: {full} of {max(full, wait.network_size)} nodes full,"
            f" position {position} of {length}"
        )
    if asked and counts["no_image"] == asked:
        what = f"image {wait.image}" if wait.engine == "docker" else f"engine {wait.engine}"
        gossip = _gossip(wait)
        return f"no node has {what} (asked {asked}){gossip}"
    if asked and counts["too_big"] == asked:
        return f"too big for every node asked (asked {asked}){_gossip(wait)}"
    if wait.gossip_rounds:
        refused = ", ".join(f"{counts[a]} {a.replace('_', ' ')}" for a in ANSWERS[1:] if counts[a])
        offers = f" after {asked} offer(s): {refused}" if refused else ""
        return f"bidding by gossip{offers}{_gossip(wait)}"
    if asked:
        waiting = counts["no_answer"]
        return f"offered to {asked} node(s): {counts['bid']} of {wait.wanted} bid(s)" + (
            f", {waiting} not answered yet" if waiting else ""
        )
    return "finding nodes to offer it to"


def _gossip(wait: ShardWait) -> str:
    if not wait.gossip_rounds:
        return ""
    return f"; gossip round {wait.gossip_rounds}, {wait.round_bids[-1]} bid(s)"
