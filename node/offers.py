"""Whom a requester offers a shard to (README, dispatch): the rendezvous order, less the
nodes it has reason to think cannot take it now.

A requester learns about other nodes only from their answers: an offer declined
``full`` says the node had no free slot a moment ago, ``no_image`` that it has not
got an engine or image, ``too_big`` that it never has the CPU or memory asked,
and an offer that could not be delivered that the node may be gone. Each answer
is remembered for a while (:data:`FORGET_S`), so the next job's offers skip those
nodes and go straight to ones that may say yes; a bid clears what was known of
the node. Nothing here is a promise: a node believed to have room may still
decline, and the requester then offers the next one.

Not thread-safe: the node's trio loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from node.bidder import offer_order
from node.messages import DeclineReason
from node.models import JobSpec

# How long each kind of answer is believed.
FORGET_S: dict[str, float] = {
    # Until the node says a slot came free (:meth:`OfferHints.freed`); this long at most.
    "full": 30.0,
    "unreachable": 10.0,
    "no_image": 60.0,
    "too_big": 60.0,
}
MAX_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class OfferHintStatistics:
    """``remembered``: (node, what) pairs believed now; ``skipped``: candidates left
    out of an offer order because of them."""

    remembered: int
    skipped: int


def _subject(reason: str, spec: JobSpec) -> str:
    """What an answer is about: the node as a whole, or this spec's image or size."""
    if reason == "no_image":
        return f"{spec.engine}:{spec.image}"
    if reason == "too_big":
        return f"{spec.resources.cpu}:{spec.resources.memory}"
    return ""


class OfferHints:
    """What this requester believes of other nodes' room, from their answers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str, str], float] = {}  # (node, reason, subject)
        self._skipped = 0

    def declined(self, node: str, reason: DeclineReason, spec: JobSpec) -> None:
        """``node`` declined an offer of ``spec`` for ``reason``."""
        if reason in FORGET_S:
            self._remember(node, reason, _subject(reason, spec))

    def unreachable(self, node: str) -> None:
        """An offer to ``node`` could not be delivered."""
        self._remember(node, "unreachable", "")

    def bid(self, node: str) -> None:
        """``node`` bid: it had room, and it answers."""
        for reason in ("full", "unreachable"):
            self._until.pop((node, reason, ""), None)

    def freed(self, node: str) -> None:
        """``node`` said it has a free slot now."""
        self._until.pop((node, "full", ""), None)

    def _remember(self, node: str, reason: str, subject: str) -> None:
        if len(self._until) >= MAX_REMEMBERED:
            self._expire()
        if len(self._until) < MAX_REMEMBERED:
            self._until[(node, reason, subject)] = self._clock() + FORGET_S[reason]

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]

    def may_take(self, node: str, spec: JobSpec) -> bool:
        """Whether nothing known says ``node`` cannot take ``spec`` now."""
        now = self._clock()
        for reason in FORGET_S:
            until = self._until.get((node, reason, _subject(reason, spec)))
            if until is not None:
                if until > now:
                    return False
                del self._until[(node, reason, _subject(reason, spec))]
        return True

    def candidates(
        self, job_id: str, shard: int, spec: JobSpec, members: Sequence[str], exclude: set[str]
    ) -> list[str]:
        """``members`` in offer order (:func:`~node.bidder.offer_order`), without
        ``exclude`` and the nodes believed unable to take ``spec`` now."""
        ordered = offer_order(job_id, shard, members)
        chosen = [n for n in ordered if n not in exclude and self.may_take(n, spec)]
        self._skipped += len(ordered) - len(chosen) - len(exclude & set(ordered))
        return chosen

    def statistics(self) -> OfferHintStatistics:
        self._expire()
        return OfferHintStatistics(remembered=len(self._until), skipped=self._skipped)


def spread_hosts(
    ordered: Sequence[str], host_of: Callable[[str], str | None], first: int
) -> list[str]:
    """``ordered`` with its first ``first`` nodes on distinct hosts where it can: each
    is the best-ranked node of a host not picked yet, and the rest follow in their
    order. A node whose host is unknown counts as a host of its own. Runs of one
    shard then land on different machines, so one machine's failure or forgery
    cannot decide a verification alone."""
    picked: list[str] = []
    hosts: set[str] = set()
    for node in ordered:
        if len(picked) == first:
            break
        host = host_of(node)
        if host is None or host not in hosts:
            picked.append(node)
            if host is not None:
                hosts.add(host)
    chosen = set(picked)
    return picked + [node for node in ordered if node not in chosen]
