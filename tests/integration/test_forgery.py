"""Bad actors that do not collude (``devstack up --bad-actors 2 --no-collude``), on a
real devstack of 5 nodes: each forges its own way, so no two forged results agree.

Jobs of concurrency 3 run until one had one forger among its first runs and one had
both. With a plain majority (margin 1) one forger is outvoted at no extra cost, and
both make three different results: the job ends ``error`` (too few fresh nodes for
a re-run). With the default margin of 2, fresh runs settle both cases, and with
credibility (the default) a requester stops giving a forger work once it caught it.
No forged result is ever published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.client import NodeClient
from tests.conftest import Devstack, get_json, running_devstack, wait_job_end

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 120.0
MAX_JOBS = 40  # one forger in 6 jobs of 10, both in 3: both cases come soon


@pytest.fixture(scope="module")
def lone_forgers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    stack = Devstack(
        state_dir=tmp_path_factory.mktemp("forgery"),
        nodes=5,
        up_args=("--bad-actors", "2", "--no-collude"),
    )
    with running_devstack(stack.state_dir, stack.nodes, stack) as running:
        yield running


def runs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["node"]: e for e in answer["job"]["executions"] if e["state"] != "rejected"}


def run_until_both_cases(
    cluster: Devstack, deal: dict[str, Any], check: Callable[[int, dict[str, Any]], None]
) -> None:
    """Submit jobs of ``deal`` until one ran with one forger and one with both; each
    passes ``check(forgers, answer)``, and no forged result is published."""
    assert cluster.state is not None
    bad = {n.peer_id for n in cluster.state.nodes if n.bad_actor}
    spec = {
        "engine": "noop",
        "command": ["echo", "honest"],
        "verifier": "deterministic",
        # Credibility off: a forger caught once would get no more work from node-0.
        "deal": {"concurrency": 3, "credibility": False, **deal},
    }
    api = cluster.api(0)
    seen: set[int] = set()  # how many forgers were among a job's first runs, so far
    for _ in range(MAX_JOBS):
        with NodeClient(api) as client:
            job_id = client.submit(spec)["id"]
        answer = wait_job_end(api, job_id, JOB_TIMEOUT_S)
        # The requester's own events (a compute step it ran itself carries a role).
        mine = [
            e
            for e in answer["events"]
            if e["node"] == answer["requester"] and not e["detail"].get("role")
        ]
        first = {e["detail"]["peer"] for e in mine if e["kind"] == "bid_accepted"}
        checks = [e for e in mine if e["kind"] == "escalated"]
        if checks:
            first = set(checks[0]["detail"]["first"])
        forgers = len(bad & first)
        published = [run for run in runs(answer).values() if run["state"] == "published"]
        assert not any(run["node"] in bad for run in published), published
        if forgers:
            check(forgers, answer)
        seen.add(forgers)
        if {1, 2} <= seen:
            return
    pytest.fail(f"in {MAX_JOBS} jobs the forgers ran {seen} at a time")


def kinds(answer: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in answer["events"]]


def honest_result(answer: dict[str, Any]) -> None:
    assert answer["job"]["state"] == "completed", answer["job"]["reason"]
    previews = {r["stdout_preview"] for r in runs(answer).values() if r["state"] == "published"}
    [preview] = previews
    assert "honest" in preview and "forged" not in preview, previews


@pytest.mark.timeout(600)
def test_with_a_plain_majority_a_lone_forger_is_outvoted_at_no_extra_cost(
    lone_forgers: Devstack,
) -> None:
    assert lone_forgers.state is not None
    for node in lone_forgers.state.nodes:
        forgery = get_json(f"{node.api}/api/v1/node")["forgery"]
        assert forgery == ({"collude": False, "rate": 1.0} if node.bad_actor else None)

    def check(forgers: int, answer: dict[str, Any]) -> None:
        if forgers == 1:
            honest_result(answer)
            assert not {"rerun", "escalated"} & set(kinds(answer)), kinds(answer)
            assert len(runs(answer)) == 3
        else:  # three different results, and too few fresh nodes for a re-run
            assert answer["job"]["state"] == "error"
            assert "3 proposals, 3 different results" in answer["job"]["reason"]

    run_until_both_cases(lone_forgers, {"margin": 1}, check)


@pytest.mark.timeout(600)
def test_with_the_margin_lone_forgers_are_outvoted_by_the_fewest_fresh_runs(
    lone_forgers: Devstack,
) -> None:
    """2 to 1 is short of the margin of 2 whoever the one is (a lone forger looks
    like an honest node outvoted by two colluders): one fresh run settles it, two if
    that run is the other forger's. Three different results need two fresh runs."""

    def check(forgers: int, answer: dict[str, Any]) -> None:
        honest_result(answer)
        added = [e["detail"]["more"] for e in answer["events"] if e["kind"] == "escalated"]
        assert "rerun" not in kinds(answer)
        assert added in ([1], [1, 1]) if forgers == 1 else added == [2], added

    run_until_both_cases(lone_forgers, {}, check)


@pytest.mark.timeout(600)
def test_with_credibility_a_lone_forger_costs_one_escalation_and_then_nothing(
    lone_forgers: Devstack,
) -> None:
    """node-2, a requester that has caught nobody yet, with the default deal: a
    forger's first dispute costs a fresh run and gets it caught; after that it runs
    none of node-2's jobs, so the forgers cost at most two escalations in all."""
    assert lone_forgers.state is not None
    bad = {n.peer_id for n in lone_forgers.state.nodes if n.bad_actor}
    requester = lone_forgers.state.nodes[2]
    assert not requester.bad_actor
    spec = {"engine": "noop", "command": ["echo", "honest"], "verifier": "deterministic"}
    spec["deal"] = {"concurrency": 3}
    escalations = 0
    for _ in range(MAX_JOBS):
        caught = {
            peer
            for peer, record in get_json(f"{requester.api}/api/v1/node")["credibility"].items()
            if record["excluded_until"]
        }
        with NodeClient(requester.api) as client:
            job_id = client.submit(spec)["id"]
        answer = wait_job_end(requester.api, job_id, JOB_TIMEOUT_S)
        honest_result(answer)
        assert not caught & runs(answer).keys(), "a caught forger was given a run"
        escalations += kinds(answer).count("escalated")
        if caught == bad:
            break
    assert caught == bad, f"in {MAX_JOBS} jobs node-2 caught {len(caught)} of the forgers"
    assert escalations <= 2, escalations


def test_a_restarted_lone_forger_still_forges_alone(lone_forgers: Devstack) -> None:
    assert lone_forgers.state is not None
    forger = next(n for n in lone_forgers.state.nodes if n.bad_actor)
    restarted = lone_forgers.restart(forger)
    assert get_json(f"{restarted.api}/api/v1/node")["forgery"] == {"collude": False, "rate": 1.0}
