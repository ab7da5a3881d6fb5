"""What a restarted requester reads back of each shard (:mod:`node.resume`): the
nodes running its current attempt, their proposals and verdicts, and the stage its
course goes on at."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.models import Execution, ExecutionState, JobEvent
from node.resume import shard_progress

pytestmark = pytest.mark.timeout(60)

REQ = "QmRequester"
JOB = "job-1"


def event(kind: str, shard: int | None = 0, node: str = REQ, **detail: Any) -> JobEvent:
    return JobEvent(job_id=JOB, kind=kind, at=1.0, node=node, shard=shard, detail=detail)


def execution(node: str, state: ExecutionState, shard: int = 0, **fields: Any) -> Execution:
    return Execution(job_id=JOB, shard=shard, node=node, state=state, updated_at=1.0, **fields)


def test_a_shard_still_bidding_resumes_at_its_bids() -> None:
    progress = shard_progress(0, REQ, [], [event("offered", shard=None)])
    assert progress.stage == "bids"
    assert not progress.accepted


def test_accepted_nodes_resume_at_their_results_with_what_they_proposed() -> None:
    events = [event("bid_accepted", peer="A"), event("bid_accepted", peer="B")]
    rows = [
        execution("A", ExecutionState.PROPOSED, result_id="cid-a"),
        execution("B", ExecutionState.RUNNING),
    ]
    progress = shard_progress(0, REQ, rows, events)
    assert progress.stage == "results"
    assert progress.accepted == {"A", "B"}
    assert progress.proposals == {"A": "cid-a"}


def test_a_retried_node_is_tried_and_no_longer_accepted() -> None:
    events = [
        event("bid_accepted", peer="A"),
        event("retry", peer="A", cause="no heartbeat"),
        event("bid_accepted", peer="B"),
    ]
    rows = [
        execution("A", ExecutionState.ERROR, reason="lost"),
        execution("B", ExecutionState.RUNNING),
    ]
    progress = shard_progress(0, REQ, rows, events)
    assert progress.accepted == {"B"}
    assert progress.tried == {"A"}
    assert progress.retries == 1
    assert progress.errors == {}


def test_an_acceptance_that_never_arrived_does_not_count() -> None:
    events = [event("bid_accepted", peer="A"), event("error", peer="A", reason="unreachable")]
    progress = shard_progress(0, REQ, [execution("A", ExecutionState.ERROR)], events)
    assert progress.stage == "bids"
    assert not progress.accepted


def test_a_rerun_starts_a_fresh_attempt() -> None:
    events = [event("bid_accepted", peer="A"), event("rerun", attempt=1)]
    progress = shard_progress(0, REQ, [execution("A", ExecutionState.RESULTS_REJECTED)], events)
    assert progress.attempt == 1
    assert progress.tried == {"A"}
    assert progress.stage == "bids"


def test_accepted_results_resume_at_publication_and_a_completed_shard_is_done() -> None:
    events = [event("bid_accepted", peer="A"), event("bid_accepted", peer="B")]
    rows = [
        execution("A", ExecutionState.PUBLISHED, result_id="cid", result_url="ipfs://cid"),
        execution("B", ExecutionState.RESULTS_ACCEPTED, result_id="cid"),
    ]
    progress = shard_progress(0, REQ, rows, events)
    assert progress.stage == "publish"
    assert progress.results_accepted == {"A", "B"}
    assert progress.published == {"A": "ipfs://cid"}
    done = shard_progress(0, REQ, rows, [*events, event("shard_completed")])
    assert done.stage == "done"


def test_other_shards_and_the_requesters_own_compute_part_are_not_read() -> None:
    events = [
        event("bid_accepted", shard=1, peer="A"),
        event("bid_accepted", peer="B", role="compute"),
        event("bid_accepted", node="QmOther", peer="C"),
    ]
    assert shard_progress(0, REQ, [], events).stage == "bids"


def test_escalations_and_spot_checks_add_up_their_extra_runs() -> None:
    events = [
        event("bid_accepted", peer="A"),
        event("bid_accepted", peer="B"),
        event("spot_check", more=1, first=["A", "B"], extra_runs=1),
        event("bid_accepted", peer="C"),
        event("escalated", more=2, first=["A", "B"], extra_runs=3),
        event("bid_accepted", peer="D"),
        event("bid_accepted", peer="E"),
    ]
    progress = shard_progress(0, REQ, [], events)
    assert progress.extra == 3
    assert progress.first_runs == {"A", "B"}
    assert progress.accepted == {"A", "B", "C", "D", "E"}
    assert progress.attempt == 0


def test_first_runs_come_from_the_first_check_only() -> None:
    events = [
        event("escalated", more=1, first=["A", "B", "C"]),
        event("escalated", more=1, first=["A", "B", "C", "D"]),
    ]
    progress = shard_progress(0, REQ, [], events)
    assert progress.first_runs == {"A", "B", "C"}
    assert progress.extra == 2


def test_a_shard_never_checked_has_no_extra_runs_nor_first_runs() -> None:
    progress = shard_progress(0, REQ, [], [event("bid_accepted", peer="A")])
    assert progress.extra == 0
    assert progress.first_runs is None


def test_a_rerun_forgets_the_extra_runs_and_first_runs_of_the_attempt_before() -> None:
    events = [
        event("bid_accepted", peer="A"),
        event("spot_check", more=1, first=["A"]),
        event("bid_accepted", peer="B"),
        event("rerun", attempt=1),
    ]
    progress = shard_progress(0, REQ, [], events)
    assert (progress.extra, progress.first_runs) == (0, None)
    assert progress.tried == {"A", "B"}
    later = [*events, event("bid_accepted", peer="C"), event("escalated", more=2, first=["C"])]
    progress = shard_progress(0, REQ, [], later)
    assert (progress.extra, progress.first_runs) == (2, {"C"})


def test_checks_of_other_shards_and_nodes_are_not_read() -> None:
    events = [
        event("escalated", shard=1, more=2, first=["A"]),
        event("spot_check", node="QmOther", more=1, first=["B"]),
        event("escalated", more=3, first=["C"], role="compute"),
    ]
    progress = shard_progress(0, REQ, [], events)
    assert (progress.extra, progress.first_runs) == (0, None)


nodes = st.sampled_from(["A", "B", "C", "D"])
steps = st.lists(
    st.tuples(st.sampled_from(["bid_accepted", "retry", "rerun", "error"]), nodes), max_size=20
)
checks = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["escalated", "spot_check"]),
            st.integers(0, 5),
            st.frozensets(nodes, min_size=1),
        ),
        st.just(("rerun", 0, frozenset())),
    ),
    max_size=12,
)


@given(steps)
def test_the_accepted_set_follows_acceptances_retries_and_reruns(
    story: list[tuple[str, str]],
) -> None:
    events = [event(kind, peer=peer) for kind, peer in story]
    progress = shard_progress(0, REQ, [], events)
    assert progress.retries == sum(kind == "retry" for kind, _ in story)
    assert progress.attempt == sum(kind == "rerun" for kind, _ in story)
    # The nodes whose last word was an acceptance since the last re-run.
    since_rerun = story[
        max((i for i, (k, _) in enumerate(story) if k == "rerun"), default=-1) + 1 :
    ]
    last = {peer: kind for kind, peer in since_rerun}
    assert progress.accepted == {p for p, k in last.items() if k == "bid_accepted"}
    assert progress.stage == ("results" if progress.accepted else "bids")
    retried = {peer for kind, peer in story if kind == "retry"}
    assert retried <= progress.tried


@given(checks)
def test_extra_runs_and_first_runs_follow_the_checks_since_the_last_rerun(
    story: list[tuple[str, int, frozenset[str]]],
) -> None:
    events = [
        event("rerun") if kind == "rerun" else event(kind, more=more, first=sorted(first))
        for kind, more, first in story
    ]
    progress = shard_progress(0, REQ, [], events)
    since_rerun = story[
        max((i for i, (k, _, _) in enumerate(story) if k == "rerun"), default=-1) + 1 :
    ]
    assert progress.extra == sum(more for _, more, _ in since_rerun)
    assert progress.first_runs == (since_rerun[0][2] if since_rerun else None)
    assert progress.attempt == sum(kind == "rerun" for kind, _, _ in story)
