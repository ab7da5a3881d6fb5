"""Why a shard waits (:mod:`node.waiting`): the line for each course a search for
nodes can take, and the structured form beside it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.waiting import ANSWERS, ShardWait, why

pytestmark = pytest.mark.timeout(60)


def answered(**counts: int) -> dict[str, str]:
    """Offered nodes ``n0``, ``n1``, … with the answers counted."""
    answers = [a for a, n in counts.items() for _ in range(n)]
    return {f"n{i}": a for i, a in enumerate(answers)}


def test_a_queued_shard_says_how_many_are_full_and_its_place() -> None:
    wait = ShardWait(0, network_size=10, answers=answered(full=10), queue=(3, 7))
    assert why(wait) == "queued: 10 of 10 nodes full, position 3 of 7"


def test_a_queued_shard_counts_the_full_nodes_it_did_not_offer_to_again() -> None:
    wait = ShardWait(0, network_size=5, answers=answered(full=1), known_full=5, queue=(1, 1))
    assert why(wait) == "queued: 5 of 5 nodes full, position 1 of 1"


def test_an_image_no_node_has_is_named_with_the_nodes_asked() -> None:
    wait = ShardWait(0, image="foo:1", answers=answered(no_image=12))
    assert why(wait) == "no node has image foo:1 (asked 12)"
    wait.round_bids = (0, 0)
    assert why(wait) == "no node has image foo:1 (asked 12); gossip round 2, 0 bid(s)"


def test_an_engine_no_node_has_is_named() -> None:
    wait = ShardWait(0, engine="wasm", answers=answered(no_image=3))
    assert why(wait) == "no node has engine wasm (asked 3)"


def test_a_job_too_big_for_everyone() -> None:
    assert why(ShardWait(0, answers=answered(too_big=4))) == (
        "too big for every node asked (asked 4)"
    )


def test_mixed_refusals_then_gossip_are_listed() -> None:
    wait = ShardWait(0, answers=answered(full=2, no_image=1, unreachable=1), round_bids=(1,))
    assert why(wait) == (
        "bidding by gossip after 4 offer(s): 2 full, 1 no image, 1 unreachable;"
        " gossip round 1, 1 bid(s)"
    )


def test_offers_in_flight_say_who_has_not_answered() -> None:
    wait = ShardWait(0, wanted=3, answers=answered(bid=1, no_answer=2))
    assert why(wait) == "offered to 3 node(s): 1 of 3 bid(s), 2 not answered yet"


def test_nothing_offered_yet() -> None:
    assert why(ShardWait(0)) == "finding nodes to offer it to"


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.sampled_from(ANSWERS), max_size=30),
    st.lists(st.integers(0, 20), max_size=5),
    st.one_of(st.none(), st.tuples(st.integers(1, 50), st.integers(1, 50))),
)
def test_the_document_counts_every_answer_and_carries_the_line(
    answers: dict[str, str], round_bids: list[int], queue: tuple[int, int] | None
) -> None:
    wait = ShardWait(4, answers=answers, round_bids=tuple(round_bids), queue=queue, network_size=50)
    document = wait.document()
    assert set(document["answers"]) == set(ANSWERS)
    assert sum(document["answers"].values()) == document["offered"] == len(answers)
    assert document["offers"] == answers
    assert document["why"] == why(wait) and document["why"]
    assert document["shard"] == 4 and document["gossip_rounds"] == len(round_bids)
    assert document["round_bids"] == round_bids
    assert (document["queue_position"], document["queue_length"]) == (queue or (None, None))
