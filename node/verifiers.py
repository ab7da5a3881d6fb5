"""The Verifier seam: which proposals of a shard are accepted.

Chosen per job by name (``spec.verifier``). Only ``noop`` exists so far; the
``deterministic`` verifier of DESIGN §8 slots in here.
"""

from __future__ import annotations

import abc
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


VERIFIERS: dict[str, Verifier] = {NoopVerifier.name: NoopVerifier()}
