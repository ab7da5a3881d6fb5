"""The deterministic verifier against a bad actor (README, verification), on a real devstack.

Five nodes, the last started with ``--bad-actor`` (``devstack up --bad-actors 1``): it
runs every job like the others, then forges its results, so its proposal's CID
differs. Which three nodes run a job of concurrency 3 is up to the bidder, so each
test submits jobs until one has the bad actor among its accepted bidders (each job
leaves it out with probability 2/5; ten tries miss it with probability 1e-4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.state import NodeEntry
from tests.conftest import (
    Devstack,
    describe_failure,
    describe_job,
    running_devstack,
    wait_job_end,
    wait_until,
)

pytestmark = pytest.mark.slow

TRIES = 10
JOB_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    stack = Devstack(
        state_dir=tmp_path_factory.mktemp("verification"), nodes=5, up_args=("--bad-actors", "1")
    )
    with running_devstack(stack.state_dir, stack.nodes, stack) as running:
        yield running


def bad_actor(cluster: Devstack) -> NodeEntry:
    assert cluster.state is not None
    bad = [n for n in cluster.state.nodes if n.bad_actor]
    assert [n.index for n in bad] == [4], "`up --bad-actors 1` marks the last node"
    info = httpx.get(f"{bad[0].api}/api/v1/node", timeout=10).json()
    assert info["bad_actor"] is True
    return bad[0]


def executions(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The runs of the job by node: its accepted bidders (not the bids it turned down)."""
    return {e["node"]: e for e in answer["job"]["executions"] if e["state"] != "rejected"}


def run_until_bad_actor_runs(
    cluster: Devstack, spec: dict[str, Any], check: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Submit ``spec`` from node 0 until a job's accepted bidders include the bad actor;
    every job that leaves it out must still pass ``check`` (honest nodes agree)."""
    bad = bad_actor(cluster)
    api = cluster.api(0)
    for _ in range(TRIES):
        response = httpx.post(f"{api}/api/v1/jobs", json=spec, timeout=30)
        assert response.status_code == 201, response.text
        answer = wait_job_end(api, response.json()["id"], JOB_TIMEOUT_S)
        if bad.peer_id in executions(answer):
            return answer
        check(answer)
    pytest.fail(f"the bad actor ran none of {TRIES} jobs of concurrency 3 on 5 nodes")


def completed_with_one_result(answer: dict[str, Any]) -> None:
    assert answer["job"]["state"] == "completed", answer["job"]["reason"]
    published = {e["result_id"] for e in executions(answer).values() if e["state"] == "published"}
    assert len(published) == 1, published


@pytest.mark.timeout(900)
def test_bad_actor_is_outvoted_and_the_job_completes(cluster: Devstack) -> None:
    spec = {
        "image": "busybox:latest",
        "command": ["echo", "verified"],
        "verifier": "deterministic",
        # Credibility off: once caught, the bad actor would get no more work from node-0.
        "deal": {"concurrency": 3, "credibility": False},
    }
    answer = run_until_bad_actor_runs(cluster, spec, completed_with_one_result)
    completed_with_one_result(answer)
    # 2 to 1 is short of the default margin of 2: one fresh node settled it.
    (escalated,) = [e for e in answer["events"] if e["kind"] == "escalated"]
    assert escalated["detail"]["more"] == 1, escalated
    bad = bad_actor(cluster)
    runs = executions(answer)
    assert runs[bad.peer_id]["state"] == "results_rejected", runs[bad.peer_id]
    honest = {node: run for node, run in runs.items() if node != bad.peer_id}
    assert {run["state"] for run in honest.values()} == {"published"}, honest
    winner = next(iter(honest.values()))["result_id"]
    assert winner.startswith("bafy")
    reason = runs[bad.peer_id]["reason"]
    assert winner in reason and "differs" in reason, reason
    # What the requester recorded: the bad actor's own proposal, and why it lost.
    rejected = [
        e for e in answer["events"] if e["kind"] == "results_rejected" and e["node"] != bad.peer_id
    ]
    assert rejected and rejected[0]["detail"]["peer"] == bad.peer_id, rejected
    proposals = {
        e["detail"]["peer"]: e["detail"]["result_id"]
        for e in answer["events"]
        if e["kind"] == "proposed" and e["node"] == answer["requester"] and "peer" in e["detail"]
    }
    assert proposals[bad.peer_id] != winner
    assert {rid for peer, rid in proposals.items() if peer != bad.peer_id} == {winner}
    # The published CID is the verified hash.
    (shard,) = answer["shards"]
    assert shard["cid"] == winner and sorted(shard["providers"]) == sorted(honest), shard
    # The accepted result is the honest one: its stdout says what the job printed.
    assert runs[bad.peer_id]["stdout_preview"] != "verified\n"
    assert {run["stdout_preview"] for run in honest.values()} == {"verified\n"}


@pytest.mark.timeout(900)
def test_confidence_the_bad_actor_denies_ends_error_with_the_reason(cluster: Devstack) -> None:
    spec = {
        "engine": "noop",
        "command": ["echo", "sure"],
        "verifier": "deterministic",
        # A plain majority: no escalation, and a re-run needs 3 fresh nodes.
        "deal": {"concurrency": 3, "confidence": 3, "margin": 1, "credibility": False},
    }
    answer = run_until_bad_actor_runs(cluster, spec, completed_with_one_result)
    record = answer["job"]
    assert record["state"] == "error", record
    # No re-run either: only 2 of the 5 nodes have not run the job.
    assert record["reason"] == (
        "verification accepted no result: 3 proposals: the largest group of equal"
        " results has 2, confidence needs 3; a re-run needs 3 nodes that have not run"
        " this shard, and only 2 of the 5 have not"
    ), record["reason"]
    runs = executions(describe_job(cluster.api(0), record["job"]["id"]))
    assert {run["state"] for run in runs.values()} == {"results_rejected"}, runs


@pytest.mark.timeout(300)
def test_submit_from_the_cli_with_the_deterministic_verifier(cluster: Devstack) -> None:
    """Whoever runs it, the honest result is what `submit --wait` prints."""
    result = cluster.run(
        "submit", "--wait", "--concurrency", "3", "--verifier", "deterministic",
        "busybox", "--", "echo", "verified",
        timeout=JOB_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, describe_failure(result)
    assert result.stdout == "verified\n", result.stdout
    status = cluster.run("status", check=True).stdout
    assert status.count("(bad actor)") == 1, status
    bad = cluster.run("submit", "--verifier", "majority", "busybox", "--", "true")
    assert bad.returncode == 2 and "--verifier" in bad.stderr, bad.stderr


def run_without_a_winner(cluster: Devstack, margin: int) -> dict[str, Any]:
    """A job of concurrency 2 from node-0 whose every run prints something else, so
    no result can win; its description once it ended."""
    spec = {
        "image": "busybox:latest",
        "command": ["cat", "/proc/sys/kernel/random/uuid"],
        "verifier": "deterministic",
        "deal": {"concurrency": 2, "margin": margin},
    }
    response = httpx.post(f"{cluster.api(0)}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 201, response.text
    return wait_job_end(cluster.api(0), response.json()["id"], JOB_TIMEOUT_S)


@pytest.mark.timeout(600)
def test_no_winner_reruns_on_fresh_nodes_then_ends_error(cluster: Devstack) -> None:
    """Every run of this job prints something else, so no attempt can have a winner.
    With a plain majority, a tie runs the shard again once on fresh nodes."""
    answer = run_without_a_winner(cluster, margin=1)
    record = answer["job"]
    assert record["state"] == "error", record
    assert record["reason"] == (
        "verification accepted no result: 2 proposals, 2 different results"
        " (after 1 re-run(s) on fresh nodes)"
    ), record["reason"]
    reruns = [e for e in answer["events"] if e["kind"] == "rerun"]
    assert len(reruns) == 1 and reruns[0]["shard"] == 0, reruns
    proposers = [e["node"] for e in record["executions"] if e["state"] == "results_rejected"]
    assert len(proposers) == 4 == len(set(proposers)), record["executions"]
    assert answer["shards"] == [{"shard": 0, "cid": None, "providers": [], "locations": []}]


@pytest.mark.timeout(600)
def test_no_winner_escalates_until_no_fresh_node_is_left(cluster: Devstack) -> None:
    """With the default margin the proposals are kept and fresh runs added: 2
    different results ask for 2 more; 4 different ask for 2 more again, and only 1
    of the 5 nodes is left."""
    answer = run_without_a_winner(cluster, margin=2)
    record = answer["job"]
    assert record["state"] == "error", record
    assert record["reason"] == (
        "verification accepted no result: 4 proposals, 4 different results: the leading"
        " result has 0 vote(s) more than the next, the margin is 2; settling it needs 2"
        " more run(s) on nodes that have not run this shard, and only 1 of the 5 have not"
    ), record["reason"]
    (escalated,) = [e for e in answer["events"] if e["kind"] == "escalated"]
    assert escalated["detail"]["more"] == 2 and len(escalated["detail"]["first"]) == 2
    assert not [e for e in answer["events"] if e["kind"] == "rerun"]
    proposers = [e["node"] for e in record["executions"] if e["state"] == "results_rejected"]
    assert len(proposers) == 4 == len(set(proposers)), record["executions"]


# -- step mode (README, step mode) ---------------------------------------------------------


@pytest.mark.timeout(300)
def test_step_mode_waits_at_each_gate_until_stepped(cluster: Devstack) -> None:
    api = cluster.api(1)
    spec = {
        "engine": "noop",
        "command": ["echo", "step by step"],
        "verifier": "deterministic",
        # A plain majority: one verdict, whoever runs it (test_byzantine.py steps
        # through an escalation).
        "deal": {"concurrency": 3, "margin": 1},
        "step": True,
    }
    response = httpx.post(f"{api}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    def at(gate: str) -> dict[str, Any] | None:
        answer = describe_job(api, job_id)
        return answer if (answer["gate"] or {}).get("name") == gate else None

    def requester_kinds(answer: dict[str, Any]) -> set[str]:
        return {e["kind"] for e in answer["events"] if e["node"] == answer["requester"]}

    # Gate 1: proposals in, verdict computed, nothing announced.
    answer = wait_until(lambda: at("verdict"), timeout=120, message="the verdict gate")
    gate = answer["gate"]
    assert answer["job"]["state"] == "verifying"
    assert len(gate["proposals"]) == 3 and sum(gate["votes"].values()) == 3, gate
    assert set(gate["accepted"]) | set(gate["rejected"]) == set(gate["proposals"]), gate
    assert not requester_kinds(answer) & {"results_accepted", "results_rejected", "publishing"}
    # The event log holds the gate too, with what was behind it.
    (gate_event,) = [e for e in answer["events"] if e["kind"] == "gate"]
    assert gate_event["detail"]["votes"] == gate["votes"], gate_event
    assert at("verdict") is not None  # still there: it waits for the user

    stepped = httpx.post(f"{api}/api/v1/jobs/{job_id}/step", timeout=30)
    assert stepped.status_code == 200 and stepped.json()["opened"] == "verdict", stepped.text

    # Gate 2: the verdict is out, the go-ahead to publish is not.
    answer = wait_until(lambda: at("publish"), timeout=60, message="the publish gate")
    results = answer["gate"]["results"]
    assert results and len(set(results.values())) == 1, results
    assert next(iter(results.values())).startswith("bafy")
    assert "published" not in requester_kinds(answer)
    assert not {e["state"] for e in answer["job"]["executions"]} & {"published"}

    result = cluster.run("step", job_id)
    assert result.returncode == 0, describe_failure(result)
    assert "opened the publish gate" in result.stdout, result.stdout
    final = wait_job_end(api, job_id, JOB_TIMEOUT_S)
    assert final["job"]["state"] == "completed", final["job"]["reason"]
    assert final["gate"] is None

    again = httpx.post(f"{api}/api/v1/jobs/{job_id}/step", timeout=30)
    assert again.status_code == 409 and again.json()["error"] == "not_at_gate", again.text
    assert "not waiting at a gate" in again.json()["message"]
    unknown = httpx.post(f"{api}/api/v1/jobs/no-such-job/step", timeout=30)
    assert unknown.status_code == 404, unknown.text
