"""Verifiers: which proposals of a shard are accepted (README, verification)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.verifiers import VERIFIERS, DeterministicVerifier, NoopVerifier, Proposal

deterministic = DeterministicVerifier()


def proposals(*results: str) -> list[Proposal]:
    return [Proposal(f"node-{i}", result) for i, result in enumerate(results)]


def test_both_verifiers_are_chosen_by_name() -> None:
    assert set(VERIFIERS) == {"noop", "deterministic"}
    assert isinstance(VERIFIERS["deterministic"], DeterministicVerifier)


def test_a_bad_actor_is_outvoted_and_told_why() -> None:
    verdict = deterministic.verify(proposals("good", "bad", "good"), confidence=0)
    assert verdict.accepted == {"node-0", "node-2"}
    assert verdict.failure is None
    assert verdict.rejected.keys() == {"node-1"}
    assert "bad" in verdict.rejected["node-1"] and "good" in verdict.rejected["node-1"]
    assert "2 node(s)" in verdict.rejected["node-1"]


def test_confidence_above_the_largest_group_accepts_nothing() -> None:
    verdict = deterministic.verify(proposals("good", "bad", "good"), confidence=3)
    assert not verdict.accepted
    assert verdict.failure == (
        "3 proposals: the largest group of equal results has 2, confidence needs 3"
    )
    assert verdict.rejected.keys() == {"node-0", "node-1", "node-2"}


def test_all_different_is_no_winner() -> None:
    verdict = deterministic.verify(proposals("a", "b", "c"), confidence=0)
    assert not verdict.accepted and verdict.failure == "3 proposals, 3 different results"


def test_a_tie_is_no_winner() -> None:
    verdict = deterministic.verify(proposals("a", "a", "b", "b"), confidence=0)
    assert not verdict.accepted
    assert verdict.failure == "4 proposals, 2 different results, the largest groups tied at 2"


def test_one_proposal_wins_alone_unless_confidence_asks_more() -> None:
    assert deterministic.verify(proposals("a"), confidence=1).accepted == {"node-0"}
    assert not deterministic.verify(proposals("a"), confidence=2).accepted
    assert deterministic.verify([], confidence=0).failure == "no proposals"


@given(
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=12),
)
def test_every_proposal_is_decided_once_and_winners_agree(
    results: list[str], confidence: int
) -> None:
    given_proposals = proposals(*results)
    verdict = deterministic.verify(given_proposals, confidence=confidence)
    nodes = {p.node for p in given_proposals}
    assert verdict.accepted | verdict.rejected.keys() == nodes
    assert not verdict.accepted & verdict.rejected.keys()
    accepted = [p for p in given_proposals if p.node in verdict.accepted]
    assert len({p.result_id for p in accepted}) <= 1
    if accepted:
        size = len(accepted)
        assert size >= max(confidence, 1)
        others = [results.count(r) for r in set(results) if r != accepted[0].result_id]
        assert all(size > n for n in others)
        assert verdict.failure is None
    else:
        assert verdict.failure


def test_noop_accepts_everything() -> None:
    verdict = NoopVerifier().verify(proposals("a", "b"), confidence=2)
    assert verdict.accepted == {"node-0", "node-1"} and not verdict.rejected
