"""The pure parts of ``devstack bench chaos`` (no cluster): its job specs, the order a
submission tries the nodes in, which node each kill picks, the percentiles, and the
tally of the jobs' outcomes from hand-built describe answers."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.bench.chaos import (
    SPECS,
    Accepted,
    Ledger,
    Outcome,
    choose_victim,
    is_requester_kill,
    job_spec,
    open_at,
    p50_p95,
    retryable,
    submit_one,
    submit_order,
    tally,
)
from devstack.client import NodeApiError

pytestmark = pytest.mark.timeout(60)

REQ = "12D3KooWRequester"
CID = "bafyreference"
OTHER = "bafyother"


def ev(kind: str, at: float, **detail: Any) -> dict[str, Any]:
    return {"job_id": "j", "kind": kind, "at": at, "node": REQ, "shard": None, "detail": detail}


def answer(
    job_id: str,
    state: str,
    *,
    events: list[dict[str, Any]] | None = None,
    cids: list[str | None] | None = None,
    reason: str | None = None,
    updated_at: float = 10.0,
) -> dict[str, Any]:
    """A describe answer as the requester gives it, with what the tally reads."""
    return {
        "job": {
            "job": {"id": job_id},
            "state": state,
            "reason": reason,
            "updated_at": updated_at,
        },
        "requester": REQ,
        "node": REQ,
        "events": [ev("created", 0.0), *(events or [])],
        "shards": [{"shard": i, "cid": c} for i, c in enumerate(cids or [])],
    }


# -- specs, order, victims ------------------------------------------------------------


@given(st.sampled_from(["noop", "docker"]), st.integers(0, 10_000), st.integers(1, 5))
def test_a_spec_repeats_every_SPECS_jobs(engine: str, index: int, laps: int) -> None:
    assert job_spec(engine, index) == job_spec(engine, index + laps * SPECS)
    assert job_spec(engine, index).engine == engine


@pytest.mark.parametrize("engine", ["noop", "docker"])
def test_the_specs_of_one_lap_are_distinct(engine: str) -> None:
    commands = {tuple(job_spec(engine, i).command) for i in range(SPECS)}
    assert len(commands) == SPECS


def test_a_docker_job_runs_the_local_image_briefly() -> None:
    spec = job_spec("docker", 13, "busybox:latest")
    assert spec.image == "busybox:latest"
    assert spec.command == ["sh", "-c", "echo chaos-3; sleep 1"]
    assert spec.deal.concurrency == 1


@given(st.integers(0, 10_000), st.integers(1, 60))
def test_a_submission_tries_each_node_once_starting_round_robin(index: int, nodes: int) -> None:
    order = submit_order(index, nodes)
    assert order[0] == index % nodes
    assert sorted(order) == list(range(nodes))


@pytest.mark.parametrize(
    ("status", "again"), [(None, True), (500, True), (503, True), (400, False), (404, False)]
)
def test_only_an_unreachable_or_failing_node_sends_a_submission_elsewhere(
    status: int | None, again: bool
) -> None:
    assert retryable(NodeApiError("x", status=status)) is again


def test_every_third_kill_is_of_a_requester() -> None:
    assert [n for n in range(1, 10) if is_requester_kill(n)] == [3, 6, 9]


alive_sets = st.lists(st.integers(0, 49), min_size=1, max_size=50, unique=True)


@given(st.integers(1, 100), alive_sets, st.one_of(st.none(), st.integers(0, 49)), st.integers())
def test_a_victim_is_always_a_live_node(
    number: int, alive: list[int], requester: int | None, seed: int
) -> None:
    node, of_requester = choose_victim(number, alive, requester, random.Random(seed))
    assert node in alive
    # The requester is aimed at on every third kill, when it is alive, and only then.
    aimed = is_requester_kill(number) and requester in alive
    assert of_requester is aimed
    if aimed:
        assert node == requester


def test_no_live_node_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose_victim(1, [], None, random.Random(0))


def test_the_ledger_hands_the_chaos_thread_the_next_accepted_job() -> None:
    ledger = Ledger()
    ledger.accept(Accepted(0, "old", 1, 0.0))
    got: list[Accepted | None] = []
    waiter = threading.Thread(target=lambda: got.append(ledger.next_accepted(30.0)))
    waiter.start()
    # The waiter counts what it has seen under the lock: accept until it has taken one.
    while waiter.is_alive():
        ledger.accept(Accepted(1, "new", 2, 1.0))
        waiter.join(0.05)
    assert got and got[0] is not None and got[0].job_id == "new"


def test_a_closed_ledger_hands_nothing() -> None:
    ledger = Ledger()
    ledger.close()
    assert ledger.next_accepted(30.0) is None


# -- figures --------------------------------------------------------------------------


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_p50_is_at_most_p95_and_both_lie_within_the_values(values: list[float]) -> None:
    fig = p50_p95(values, digits=9)
    assert fig["n"] == len(values)
    lo, hi = min(values), max(values)
    assert lo - 1e-6 <= fig["p50"] <= fig["p95"] + 1e-6
    assert fig["p95"] <= hi + 1e-6


def test_no_values_have_no_percentiles() -> None:
    assert p50_p95([]) == {"n": 0, "p50": None, "p95": None}


def test_a_job_is_open_at_a_kill_if_it_ended_after_it() -> None:
    done = answer("a", "completed", events=[ev("completed", 5.0)])
    assert open_at(done, 4.0) is True
    assert open_at(done, 6.0) is False
    assert open_at(answer("b", "running"), 100.0) is True
    assert open_at(None, 1.0) is None
    # Ended without a completed event: its record's last update is when.
    assert open_at(answer("c", "error", updated_at=3.0), 2.0) is True


def test_the_tally_counts_states_reasons_retries_and_recovery() -> None:
    restarted = "the requester restarted while the job was bidding"
    outcomes = [
        Outcome(0, answer("ok", "completed", events=[ev("completed", 2.0)], cids=[CID])),
        Outcome(
            0,
            answer(
                "retried",
                "completed",
                events=[
                    ev("retry", 3.0, detected_after_s=0.5),
                    ev("retry", 4.0, detected_after_s=1.5),
                    ev("completed", 7.0),
                ],
                cids=[CID],
            ),
        ),
        Outcome(0, answer("differs", "completed", events=[ev("completed", 2.0)], cids=[OTHER])),
        Outcome(1, answer("e1", "error", reason=restarted)),
        Outcome(1, answer("e2", "error", reason=restarted)),
        Outcome(1, answer("e3", "error", events=[ev("retry", 1.0)], reason="no node bid")),
        Outcome(1, answer("c", "cancelled", reason="asked")),
        Outcome(1, answer("open", "running")),
        Outcome(1, None),
    ]
    got = tally(outcomes, {0: [CID], 1: [OTHER]})
    assert (got["completed"], got["error"], got["cancelled"], got["open"]) == (3, 3, 1, 2)
    assert got["unreadable"] == 1
    assert got["reasons"][0] == {"reason": f"error: {restarted}", "count": 2}
    assert {r["reason"] for r in got["reasons"]} == {
        f"error: {restarted}", "error: no node bid", "cancelled: asked"
    }  # fmt: skip
    assert got["retries"] == 3
    # Detection from each retry that says it; recovery from a job's first retry.
    assert got["detection_s"] == {"n": 2, "p50": 1.0, "p95": 1.45}
    assert got["recovery_s"] == {"n": 1, "p50": 4.0, "p95": 4.0}
    assert (got["results_differ"], got["results_differ_jobs"]) == (1, ["differs"])


def test_the_requesters_own_compute_steps_are_not_the_jobs_events() -> None:
    events = [
        ev("retry", 1.0, role="compute"),
        ev("completed", 1.5, role="compute"),
        ev("completed", 2.0),
    ]
    got = tally([Outcome(0, answer("a", "completed", events=events, cids=[CID]))], {0: [CID]})
    assert got["retries"] == 0 and got["recovery_s"]["n"] == 0
    assert open_at(answer("a", "completed", events=events), 1.8) is True


job_states = st.sampled_from(["completed", "error", "cancelled", "running", "bidding", None])


@given(st.lists(st.tuples(st.integers(0, SPECS - 1), job_states, st.booleans()), max_size=60))
def test_every_job_is_counted_once_and_only_completed_ones_can_differ(
    jobs: list[tuple[int, str | None, bool]],
) -> None:
    reference = {k: [CID] for k in range(SPECS)}
    outcomes = [
        Outcome(
            spec,
            None
            if state is None
            else answer(f"j{i}", state, cids=[CID if same else OTHER], reason="why"),
        )
        for i, (spec, state, same) in enumerate(jobs)
    ]
    got = tally(outcomes, reference)
    assert got["completed"] + got["error"] + got["cancelled"] + got["open"] == len(jobs)
    assert got["results_differ"] == sum(
        1 for _, state, same in jobs if state == "completed" and not same
    )
    assert sum(r["count"] for r in got["reasons"]) <= got["error"] + got["cancelled"]


class FakeNode:
    """A node's API client that accepts, cannot be reached, or refuses the spec."""

    def __init__(self, status: int | None = 0) -> None:
        self.status, self.asked = status, 0

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.asked += 1
        if self.status == 0:
            return {"id": f"job-{self.asked}"}
        raise NodeApiError("no", status=self.status)


def test_a_submission_that_meets_down_nodes_goes_to_the_next_one() -> None:
    clients = {0: FakeNode(None), 1: FakeNode(None), 2: FakeNode()}
    ledger = Ledger()
    submit_one(0, job_spec("noop", 0), clients, ledger)  # type: ignore[arg-type]
    [job] = ledger.accepted
    assert (job.index, job.node, ledger.retried, ledger.refused) == (0, 2, 2, [])


def test_a_refused_spec_is_not_sent_elsewhere() -> None:
    clients = {0: FakeNode(400), 1: FakeNode()}
    ledger = Ledger()
    submit_one(0, job_spec("noop", 0), clients, ledger)  # type: ignore[arg-type]
    assert (ledger.accepted, len(ledger.refused), clients[1].asked) == ([], 1, 0)
