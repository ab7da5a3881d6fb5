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
class Policy:
    """What the job's deal asks of a verdict, and where the shard stands.

    ``confidence``: the fewest equal results a verdict takes; ``margin``: when
    proposals differ, the votes the leading result needs over the next (1 is a
    plain majority: no escalation); ``extra_runs`` the shard already added on fresh
    nodes, of at most ``max_extra_runs``; ``fresh_nodes`` of the ``network_size``
    have not run the shard (None: no bound), so no more runs than that can be asked;
    ``spot_check``: a unanimous result is to be checked by one more fresh node first."""

    confidence: int = 0
    margin: int = 1
    extra_runs: int = 0
    max_extra_runs: int = 0
    spot_check: bool = False
    fresh_nodes: int | None = None
    network_size: int = 0


@dataclass(frozen=True)
class Verdict:
    accepted: frozenset[str]
    rejected: dict[str, str] = field(default_factory=dict)
    """Rejected node -> the reason, for the user."""
    failure: str | None = None
    """Why nothing was accepted (None when something was), for the user."""
    more: int = 0
    """Runs on fresh nodes wanted before a verdict (nothing accepted or rejected yet)."""
    why_more: str | None = None
    """Why they are wanted, for the user."""
    spot_check: bool = False
    """The run wanted checks a unanimous result (not a disagreement)."""


class Verifier(abc.ABC):
    name: str
    checks: bool = True
    """Whether its verdicts say anything of a proposer (a requester's credibility
    record counts only those)."""

    @abc.abstractmethod
    def verify(self, proposals: list[Proposal], policy: Policy) -> Verdict:
        """Decide on every proposal of one shard, or ask for more runs first."""


class NoopVerifier(Verifier):
    """Accepts every proposal."""

    name = "noop"
    checks = False

    def verify(self, proposals: list[Proposal], policy: Policy) -> Verdict:
        return Verdict(accepted=frozenset(p.node for p in proposals))


class DeterministicVerifier(Verifier):
    """Equal result ids are equal results. All proposals agree: accepted once at
    least ``confidence`` (1 when 0) and after a spot check when one is due. They
    differ: with a plain majority (margin 1) the largest group wins if no other is
    as large; with a margin, the leading result wins once it leads the next by
    ``margin`` votes (one per proposal: a check that contradicts a unanimous group
    is one more vote, not a veto; see README, verification). Until then the verdict
    asks for the runs on fresh nodes that could settle it, while ``max_extra_runs``
    and the fresh nodes left allow them. Otherwise every proposal is rejected and
    :attr:`Verdict.failure` says why, e.g. "3 proposals, 3 different results"."""

    name = "deterministic"

    def verify(self, proposals: list[Proposal], policy: Policy) -> Verdict:
        raw = Counter(p.result_id for p in proposals).most_common()
        if not raw:
            return Verdict(accepted=frozenset(), failure="no proposals")
        needed = max(policy.confidence, 1)
        (winner, size), runner_up = raw[0], raw[1][1] if len(raw) > 1 else 0
        if not runner_up:  # unanimous
            if size < needed:
                failure = self._below_confidence(proposals, size, needed)
                if policy.margin > 1:
                    return self._more(proposals, policy, needed - size, failure)
                return self._fail(proposals, failure)
            if policy.spot_check and self._room(policy) > 0:
                why = f"a spot check of {size} equal result(s)"
                return Verdict(accepted=frozenset(), more=1, why_more=why, spot_check=True)
            return self._accept(proposals, winner, size)
        if policy.margin <= 1:
            if size == runner_up:
                failure = f"{len(proposals)} proposals, {len(raw)} different results"
                if size > 1:
                    failure += f", the largest groups tied at {size}"
                return self._fail(proposals, failure)
            if size < needed:
                return self._fail(proposals, self._below_confidence(proposals, size, needed))
            return self._accept(proposals, winner, size)
        lead = size - runner_up
        if lead >= policy.margin and size >= needed:
            return self._accept(proposals, winner, size)
        more = max(policy.margin - lead, needed - size, 1)
        why = (
            f"{len(proposals)} proposals, {len(raw)} different results: the leading result"
            f" has {lead} vote(s) more than the next, the margin is {policy.margin}"
        )
        return self._more(proposals, policy, more, why)

    @staticmethod
    def _room(policy: Policy) -> int:
        """The runs that may still be added: the deal's cap and the fresh nodes allow."""
        left = policy.max_extra_runs - policy.extra_runs
        return left if policy.fresh_nodes is None else min(left, policy.fresh_nodes)

    def _more(self, proposals: list[Proposal], policy: Policy, more: int, why: str) -> Verdict:
        """Ask for ``more`` runs, or fail if the deal's cap or the fresh nodes left
        forbid them."""
        if more <= self._room(policy):
            return Verdict(accepted=frozenset(), more=more, why_more=why)
        if more <= policy.max_extra_runs - policy.extra_runs:
            assert policy.fresh_nodes is not None
            return self._fail(
                proposals,
                f"{why}; settling it needs {more} more run(s) on nodes that have not run"
                f" this shard, and only {policy.fresh_nodes} of the {policy.network_size}"
                " have not",
            )
        return self._fail(
            proposals,
            f"{why}; settling it needs {more} more run(s) and the deal allows"
            f" {policy.max_extra_runs} extra, {policy.extra_runs} of them used",
        )

    @staticmethod
    def _below_confidence(proposals: list[Proposal], size: int, needed: int) -> str:
        return (
            f"{len(proposals)} proposals: the largest group of equal results has"
            f" {size}, confidence needs {needed}"
        )

    @staticmethod
    def _fail(proposals: list[Proposal], failure: str) -> Verdict:
        return Verdict(
            accepted=frozenset(),
            rejected={p.node: failure for p in proposals},
            failure=failure,
        )

    @staticmethod
    def _accept(proposals: list[Proposal], winner: str, size: int) -> Verdict:
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
