"""The Verifier seam: which proposals of a shard are accepted.

Chosen per job by name (``spec.verifier``): ``noop`` accepts everything;
``deterministic`` (README, verification) accepts the largest group of identical results when it
is not tied and has at least ``confidence`` members. A result's id is the CID of its
results tree, so identical trees have identical ids.
"""

from __future__ import annotations

import abc
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Proposal:
    node: str
    result_id: str


@dataclass(frozen=True)
class Verdict:
    accepted: frozenset[str]
    rejected: dict[str, str] = field(default_factory=dict)
    """Rejected node -> the reason, for the user."""
    failure: str | None = None
    """Why nothing was accepted (None when something was), for the user."""


class Verifier(abc.ABC):
    name: str

    @abc.abstractmethod
    def verify(self, proposals: list[Proposal], *, confidence: int) -> Verdict:
        """Decide on every proposal of one shard."""


class NoopVerifier(Verifier):
    """Accepts every proposal."""

    name = "noop"

    def verify(self, proposals: list[Proposal], *, confidence: int) -> Verdict:
        return Verdict(accepted=frozenset(p.node for p in proposals))


class DeterministicVerifier(Verifier):
    """Accepts the proposals of the largest group of equal result ids if no other group
    is as large and it has at least ``confidence`` members (1 when ``confidence`` is 0);
    rejects the rest, each with a reason naming the winning id. No winner: every
    proposal is rejected and :attr:`Verdict.failure` says why, e.g. "3 proposals, 3
    different results"."""

    name = "deterministic"

    def verify(self, proposals: list[Proposal], *, confidence: int) -> Verdict:
        groups = Counter(p.result_id for p in proposals).most_common()
        if not groups:
            return Verdict(accepted=frozenset(), failure="no proposals")
        (winner, size), runner_up = groups[0], groups[1][1] if len(groups) > 1 else 0
        needed = max(confidence, 1)
        failure = None
        if size == runner_up:
            failure = f"{len(proposals)} proposals, {len(groups)} different results"
            if size > 1:
                failure += f", the largest groups tied at {size}"
        elif size < needed:
            failure = (
                f"{len(proposals)} proposals: the largest group of equal results has"
                f" {size}, confidence needs {needed}"
            )
        if failure is not None:
            return Verdict(
                accepted=frozenset(),
                rejected={p.node: failure for p in proposals},
                failure=failure,
            )
        return Verdict(
            accepted=frozenset(p.node for p in proposals if p.result_id == winner),
            rejected={
                p.node: f"result {p.result_id} differs from {winner}, which {size} node(s) gave"
                for p in proposals
                if p.result_id != winner
            },
        )


VERIFIERS: dict[str, Verifier] = {
    verifier.name: verifier for verifier in (NoopVerifier(), DeterministicVerifier())
}
