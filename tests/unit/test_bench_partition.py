"""The pure parts of ``devstack bench partition`` (no cluster): the phase of a
submission, the jobs that ended or were published twice, the runs across the cut
re-run or adopted, the per-side table, and the options it refuses, from hand-built
describe answers."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack import netns
from devstack.bench.harness import BenchError
from devstack.bench.partition import (
    Job,
    adopted_after,
    by_side_and_phase,
    check_args,
    latency_by_phase,
    phase,
    reruns_across,
    shards_published_twice,
    times_ended,
)

pytestmark = pytest.mark.timeout(60)

REQ = "12D3KooWRequester"
NEAR = "12D3KooWNear"
FAR = "12D3KooWFar"  # on the cut host
CUT = frozenset({FAR})


def ev(kind: str, at: float, shard: int | None = 0, **detail: Any) -> dict[str, Any]:
    return {"job_id": "j", "kind": kind, "at": at, "node": REQ, "shard": shard, "detail": detail}


def answer(state: str, events: list[dict[str, Any]], runs: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "job": {
            "job": {"id": "j"},
            "state": state,
            "executions": [{"node": node, "shard": 0} for node in runs],
        },
        "events": [ev("created", 0.0, None, state="bidding"), *events],
    }


@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 100))
def test_a_submission_falls_in_exactly_the_phase_its_time_says(
    at: float, cut: float, length: float
) -> None:
    healed = cut + length
    got = phase(at, cut, healed)
    assert got == ("before" if at < cut else "during" if at < healed else "after")


def test_a_phase_without_a_cut_or_heal_yet() -> None:
    assert phase(5.0, None, None) == "before"
    assert phase(5.0, 1.0, None) == "during"


def test_a_job_ends_once_and_a_straggler_after_it_does_not_count() -> None:
    once = answer(
        "completed",
        [
            ev("publishing", 1.0, state="publishing"),
            ev("completed", 2.0, None, state="completed"),
            # An offer that failed after the end: recorded with the ended state.
            ev("offer_undelivered", 9.0, state="completed", peer=FAR),
            # A compute step the requester ran itself is not the job's own.
            ev("completed", 2.0, None, state="completed", role="compute"),
        ],
    )
    assert times_ended(once) == 1
    twice = answer(
        "error",
        [
            ev("completed", 2.0, None, state="completed"),
            ev("error", 3.0, None, state="error", reason="late"),
        ],
    )
    assert times_ended(twice) == 2


def test_a_shard_given_two_verdicts_or_published_twice_by_one_node_is_counted() -> None:
    once = answer(
        "completed",
        [ev("publishing", 1.0), ev("published", 1.1, peer=NEAR), ev("published", 1.2, peer=FAR)],
    )
    assert shards_published_twice(once) == 0
    two_verdicts = answer("completed", [ev("publishing", 1.0), ev("publishing", 2.0)])
    assert shards_published_twice(two_verdicts) == 1
    again = answer("completed", [ev("published", 1.0, peer=NEAR), ev("published", 5, peer=NEAR)])
    assert shards_published_twice(again) == 1


def test_a_run_given_up_across_the_cut_is_a_rerun_and_a_late_one_published_is_adopted() -> None:
    rerun = answer(
        "completed",
        [ev("retry", 3.0, peer=FAR), ev("published", 4.0, peer=NEAR)],
        runs=(FAR, NEAR),
    )
    assert reruns_across(rerun, CUT, requester_cut=False) == 1
    # Seen from a requester on the cut host, the far node is its neighbour.
    assert reruns_across(rerun, CUT, requester_cut=True) == 0
    adopted = answer(
        "completed",
        [
            ev("bid_accepted", 20.0, peer=FAR),
            ev("proposed", 40.0, peer=FAR),
            ev("published", 41.0, peer=FAR),
        ],
        runs=(FAR,),
    )
    assert adopted_after(adopted, CUT, requester_cut=False, healed_at=38.0) == 1
    assert adopted_after(adopted, CUT, requester_cut=False, healed_at=45.0) == 0  # not yet
    assert adopted_after(adopted, CUT, requester_cut=True, healed_at=38.0) == 0  # a neighbour
    # A run given out after the heal was never held up.
    assert adopted_after(adopted, CUT, requester_cut=False, healed_at=15.0) == 0


def test_the_table_puts_every_job_in_its_side_and_phase() -> None:
    jobs = [
        Job("cut", "during", answer("completed", [])),
        Job("cut", "during", answer("running", [])),
        Job("rest", "before", answer("error", [])),
        Job("rest", "after", None),
    ]
    table = by_side_and_phase(jobs)
    assert table["cut"]["during"] == {"completed": 1, "error": 0, "cancelled": 0, "open": 1}
    assert table["rest"]["before"]["error"] == 1
    assert table["rest"]["after"]["open"] == 1
    assert sum(sum(cell.values()) for side in table.values() for cell in side.values()) == 4


def test_latency_is_per_phase_over_the_completed_jobs() -> None:
    def done(created: float, ended: float, state: str = "completed") -> dict[str, Any]:
        record = answer(state, [ev("completed", ended, None, state=state)])
        record["job"]["job"]["created_at"] = created
        return record

    jobs = [
        Job("rest", "before", done(0.0, 0.1)),
        Job("cut", "during", done(10.0, 20.0)),
        Job("rest", "during", done(10.0, 10.5)),
        Job("rest", "during", done(10.0, 99.0, state="error")),  # not completed
        Job("rest", "after", None),
    ]
    latency = latency_by_phase(jobs)
    assert latency["before"] == {"n": 1, "p50": 0.1, "p95": 0.1}
    assert latency["during"]["n"] == 2 and latency["during"]["p95"] <= 10.0
    assert latency["after"] == {"n": 0, "p50": None, "p95": None}


def options(**given: Any) -> argparse.Namespace:
    values = {"jobs": 150, "rate": 2.0, "cut_after": 15.0, "partition": 30.0, "host": None}
    return argparse.Namespace(**{**values, **given})


def network(hosts: int) -> netns.Network:
    return netns.Network(
        tag="t",
        bridge="pybtbr",
        subnet="10.250.1.0/24",
        hosts=tuple(
            netns.HostNet(k, f"pybt-h{k}", f"pybth{k}", f"10.250.1.{k + 1}") for k in range(hosts)
        ),
    )


def test_the_last_host_is_cut_by_default_and_a_named_one_on_request() -> None:
    assert check_args(options(), network(3)).index == 2
    assert check_args(options(host="host-0"), network(3)).index == 0


@pytest.mark.parametrize(
    ("given", "hosts", "says"),
    [
        ({}, 1, "--hosts 2 or more"),
        ({"jobs": 40}, 3, "raise --jobs"),  # 19.5 s of submissions: the heal is at 45 s
        ({"host": "7"}, 3, "--host: no host '7'"),
    ],
)
def test_options_that_cannot_work_are_refused_by_name(
    given: dict[str, Any], hosts: int, says: str
) -> None:
    with pytest.raises(BenchError, match=says):
        check_args(options(**given), network(hosts))
