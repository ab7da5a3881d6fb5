"""Verifiers: which proposals of a shard are accepted (README, verification).

A plain majority (margin 1) is the old rule: the largest group wins unless tied.
With a margin, a disagreement is settled only once the leading result leads the
next by that many votes, asking for runs on fresh nodes until then,
within the deal's cap on extra runs.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.verifiers import (
    VERIFIERS,
    DeterministicVerifier,
    NoopVerifier,
    Policy,
    Proposal,
    Verdict,
)

deterministic = DeterministicVerifier()


def proposals(*results: str) -> list[Proposal]:
    """First runs, one a node."""
    return [Proposal(f"node-{i}", result) for i, result in enumerate(results)]


def shard(first: str, extra: str = "") -> list[Proposal]:
    """One result id a letter: the shard's first runs, then its extra runs."""
    return proposals(*first) + [
        Proposal(f"node-{len(first) + i}", result) for i, result in enumerate(extra)
    ]


def plain(confidence: int = 0) -> Policy:
    return Policy(confidence=confidence, margin=1)


def asks_for(verdict: Verdict) -> int:
    """The runs the verdict asks for, checking it decided nothing yet."""
    assert not verdict.accepted and not verdict.rejected and verdict.failure is None
    assert verdict.more > 0 and verdict.why_more
    return verdict.more


def test_both_verifiers_are_chosen_by_name() -> None:
    assert set(VERIFIERS) == {"noop", "deterministic"}
    assert isinstance(VERIFIERS["deterministic"], DeterministicVerifier)


# A plain majority: the old rule, no escalation.


def test_a_bad_actor_is_outvoted_and_told_why() -> None:
    verdict = deterministic.verify(proposals("good", "bad", "good"), plain())
    assert verdict.accepted == {"node-0", "node-2"}
    assert verdict.failure is None and verdict.more == 0
    assert verdict.rejected.keys() == {"node-1"}
    assert "bad" in verdict.rejected["node-1"] and "good" in verdict.rejected["node-1"]
    assert "2 node(s)" in verdict.rejected["node-1"]


def test_confidence_above_the_largest_group_accepts_nothing() -> None:
    verdict = deterministic.verify(proposals("good", "bad", "good"), plain(confidence=3))
    assert not verdict.accepted
    assert verdict.failure == (
        "3 proposals: the largest group of equal results has 2, confidence needs 3"
    )
    assert verdict.rejected.keys() == {"node-0", "node-1", "node-2"}


def test_all_different_is_no_winner() -> None:
    verdict = deterministic.verify(proposals("a", "b", "c"), plain())
    assert not verdict.accepted and verdict.failure == "3 proposals, 3 different results"


def test_a_tie_is_no_winner() -> None:
    verdict = deterministic.verify(proposals("a", "a", "b", "b"), plain())
    assert not verdict.accepted and verdict.more == 0
    assert verdict.failure == "4 proposals, 2 different results, the largest groups tied at 2"


def test_one_proposal_wins_alone_unless_confidence_asks_more() -> None:
    assert deterministic.verify(proposals("a"), plain(confidence=1)).accepted == {"node-0"}
    below = deterministic.verify(proposals("a"), plain(confidence=2))
    assert not below.accepted and below.failure and below.more == 0
    assert deterministic.verify([], plain()).failure == "no proposals"


@given(
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=12),
)
def test_every_proposal_is_decided_once_and_winners_agree(
    results: list[str], confidence: int
) -> None:
    given_proposals = proposals(*results)
    verdict = deterministic.verify(given_proposals, plain(confidence))
    nodes = {p.node for p in given_proposals}
    assert verdict.more == 0
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


# A margin: escalation.


@given(
    size=st.integers(min_value=1, max_value=8),
    data=st.data(),
    margin=st.integers(min_value=1, max_value=16),
    extra_runs=st.integers(min_value=0, max_value=8),
    max_extra_runs=st.integers(min_value=0, max_value=8),
)
def test_a_unanimous_result_is_accepted_without_an_extra_run_whatever_the_margin(
    size: int,
    data: st.DataObject,
    margin: int,
    extra_runs: int,
    max_extra_runs: int,
) -> None:
    confidence = data.draw(st.integers(min_value=0, max_value=size), label="confidence")
    given_proposals = [Proposal(f"node-{i}", "a") for i in range(size)]
    policy = Policy(confidence, margin, extra_runs, max_extra_runs, spot_check=False)
    verdict = deterministic.verify(given_proposals, policy)
    assert verdict.accepted == {p.node for p in given_proposals}
    assert not verdict.rejected and verdict.failure is None
    assert verdict.more == 0 and verdict.why_more is None


def test_a_lone_outvoted_forger_costs_one_extra_run() -> None:
    policy = Policy(margin=2, max_extra_runs=4)
    assert asks_for(deterministic.verify(shard("aax"), policy)) == 1
    verdict = deterministic.verify(
        shard("aax", "a"), Policy(margin=2, extra_runs=1, max_extra_runs=4)
    )
    assert verdict.accepted == {"node-0", "node-1", "node-3"}
    assert verdict.rejected.keys() == {"node-2"} and verdict.failure is None


def test_two_colluding_forgers_are_outvoted_by_escalation() -> None:
    def policy(extra_runs: int) -> Policy:
        return Policy(margin=2, extra_runs=extra_runs, max_extra_runs=4)

    assert asks_for(deterministic.verify(shard("ffh"), policy(0))) == 1
    tied = deterministic.verify(shard("ffh", "h"), policy(1))
    assert asks_for(tied) == 2
    assert "margin is 2" in (tied.why_more or "")
    verdict = deterministic.verify(shard("ffh", "hhh"), policy(3))
    assert verdict.accepted == {"node-2", "node-3", "node-4", "node-5"}
    assert verdict.rejected.keys() == {"node-0", "node-1"} and verdict.failure is None


def test_a_spot_check_contradicting_a_unanimous_group_is_one_more_vote() -> None:
    """3 to 1 leads by 2: the triple wins at margin 2 (the check is caught); at margin
    3 the check's dissent sends the shard to one more fresh node."""
    contradicted = shard("fff", "h")
    verdict = deterministic.verify(contradicted, Policy(margin=2, extra_runs=1, max_extra_runs=4))
    assert verdict.accepted == {"node-0", "node-1", "node-2"}
    assert verdict.rejected.keys() == {"node-3"}
    stricter = Policy(margin=3, extra_runs=1, max_extra_runs=4)
    assert asks_for(deterministic.verify(contradicted, stricter)) == 1


def test_escalation_beyond_the_deals_cap_fails_and_says_so() -> None:
    verdict = deterministic.verify(shard("ab"), Policy(margin=2, max_extra_runs=1))
    assert not verdict.accepted and verdict.more == 0
    assert verdict.rejected.keys() == {"node-0", "node-1"}
    assert verdict.failure and "extra" in verdict.failure
    assert "needs 2 more run(s)" in verdict.failure and "allows 1 extra" in verdict.failure


def test_too_few_equal_results_ask_for_the_missing_ones_with_a_margin() -> None:
    assert (
        asks_for(deterministic.verify(shard("a"), Policy(confidence=3, margin=2, max_extra_runs=4)))
        == 2
    )
    verdict = deterministic.verify(shard("a"), Policy(confidence=3, margin=2, max_extra_runs=1))
    assert not verdict.accepted and verdict.failure and "extra" in verdict.failure


@pytest.mark.parametrize("margin", [1, 2, 3])
def test_a_spot_check_asks_for_one_run_while_the_cap_allows(margin: int) -> None:
    due = Policy(margin=margin, max_extra_runs=1, spot_check=True)
    assert asks_for(deterministic.verify(shard("aaa"), due)) == 1
    spent = Policy(margin=margin, extra_runs=1, max_extra_runs=1, spot_check=True)
    verdict = deterministic.verify(shard("aaa", "a"), spent)
    assert verdict.accepted == {"node-0", "node-1", "node-2", "node-3"} and verdict.more == 0


@st.composite
def vote_sequences(draw: st.DrawFn) -> tuple[int, list[str]]:
    """How many first runs, and the result of every run in the order they arrive."""
    first = draw(st.integers(min_value=1, max_value=5))
    votes = draw(st.lists(st.sampled_from("abc"), min_size=first, max_size=first + 10))
    return first, votes


@given(
    sequence=vote_sequences(),
    margin=st.integers(min_value=2, max_value=4),
    cap=st.integers(min_value=0, max_value=8),
    spot_check=st.booleans(),
    data=st.data(),
)
def test_escalation_never_accepts_a_result_without_the_margin(
    sequence: tuple[int, list[str]],
    margin: int,
    cap: int,
    spot_check: bool,
    data: st.DataObject,
) -> None:
    first, votes = sequence
    confidence = data.draw(st.integers(min_value=0, max_value=first), label="confidence")
    given_proposals = shard("".join(votes[:first]))
    extra = 0
    while True:
        policy = Policy(confidence, margin, extra, cap, spot_check)
        verdict = deterministic.verify(given_proposals, policy)
        if verdict.more:
            asks_for(verdict)
            assert extra + verdict.more <= cap
            arrived = votes[first + extra : first + extra + verdict.more]
            if not arrived:
                return  # the sequence ran out before a verdict
            given_proposals += [
                Proposal(f"node-{first + extra + i}", result) for i, result in enumerate(arrived)
            ]
            extra += len(arrived)
            continue
        break
    assert extra <= cap
    nodes = {p.node for p in given_proposals}
    assert verdict.accepted | verdict.rejected.keys() == nodes
    assert not verdict.accepted & verdict.rejected.keys()
    if verdict.failure:
        assert not verdict.accepted
        return
    assert verdict.accepted
    (winner,) = {p.result_id for p in given_proposals if p.node in verdict.accepted}
    assert verdict.accepted == {p.node for p in given_proposals if p.result_id == winner}
    assert len(verdict.accepted) >= max(confidence, 1)
    votes_counted = Counter(p.result_id for p in given_proposals)
    for result, count in votes_counted.items():
        if result != winner:
            assert votes_counted[winner] - count >= margin


@given(
    st.lists(st.sampled_from("abcd"), max_size=8),
    st.builds(
        Policy,
        confidence=st.integers(min_value=0, max_value=8),
        margin=st.integers(min_value=1, max_value=16),
        extra_runs=st.integers(min_value=0, max_value=8),
        max_extra_runs=st.integers(min_value=0, max_value=8),
        spot_check=st.booleans(),
    ),
)
def test_noop_accepts_everything_whatever_the_policy(results: list[str], policy: Policy) -> None:
    given_proposals = proposals(*results)
    verdict = NoopVerifier().verify(given_proposals, policy)
    assert verdict.accepted == {p.node for p in given_proposals}
    assert not verdict.rejected and verdict.failure is None and verdict.more == 0


def test_no_more_runs_are_asked_than_fresh_nodes_are_left() -> None:
    policy = Policy(margin=2, max_extra_runs=8, fresh_nodes=1, network_size=5)
    verdict = deterministic.verify(proposals("a", "b"), policy)
    assert not verdict.accepted and verdict.more == 0
    assert verdict.failure is not None and verdict.failure.endswith(
        "settling it needs 2 more run(s) on nodes that have not run this shard, and only"
        " 1 of the 5 have not"
    )
    assert verdict.rejected.keys() == {"node-0", "node-1"}
    # A spot check with no fresh node left to run it is skipped.
    unchecked = Policy(margin=2, max_extra_runs=8, spot_check=True, fresh_nodes=0)
    assert deterministic.verify(proposals("a", "a"), unchecked).accepted == {"node-0", "node-1"}
