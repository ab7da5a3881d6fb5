"""Colluding bad actors against escalation, spot checks and credibility (README,
verification), on a real devstack of 6 nodes whose last 2 forge alike
(``devstack up --bad-actors 2``).

node-0 is restarted with the test hook ``--offer-first`` naming both bad actors, so
the first runs of each job it requests are the two of them and one honest node:
the forged result leads 2 to 1, the case a plain majority gets wrong. Escalation
must take it to fresh nodes until the honest result leads by the margin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Devstack,
    describe_job,
    get_json,
    running_devstack,
    wait_job_end,
    wait_until,
)

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 120.0
JOBS = 20


@pytest.fixture(scope="module")
def forced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    stack = Devstack(
        state_dir=tmp_path_factory.mktemp("byzantine"), nodes=6, up_args=("--bad-actors", "2")
    )
    with running_devstack(stack.state_dir, stack.nodes, stack) as running:
        running.restart(running.node_named("node-0"), *offer_bad_first(running))
        yield running


def bad_actors(cluster: Devstack) -> set[str]:
    assert cluster.state is not None
    bad = {n.peer_id for n in cluster.state.nodes if n.bad_actor}
    assert len(bad) == 2
    return bad


def offer_bad_first(cluster: Devstack) -> list[str]:
    return [arg for peer in sorted(bad_actors(cluster)) for arg in ("--offer-first", peer)]


def spec(**deal: Any) -> dict[str, Any]:
    return {
        "engine": "noop",
        "command": ["echo", "honest"],
        "verifier": "deterministic",
        "deal": {"concurrency": 3, **deal},
    }


def run_job(cluster: Devstack, body: dict[str, Any]) -> dict[str, Any]:
    api = cluster.api(0)
    response = httpx.post(f"{api}/api/v1/jobs", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return wait_job_end(api, response.json()["id"], JOB_TIMEOUT_S)


def kinds(answer: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in answer["events"] if e["kind"] == kind and e["node"] == answer["requester"]]


def runs(answer: dict[str, Any]) -> set[str]:
    return {e["node"] for e in answer["job"]["executions"] if e["state"] != "rejected"}


@pytest.mark.timeout(900)
def test_two_colluders_in_every_job_never_get_their_result_published(forced: Devstack) -> None:
    bad = bad_actors(forced)
    published: set[str] = set()
    for _ in range(JOBS):
        # Credibility off: the requester would stop offering them work once caught.
        answer = run_job(forced, spec(credibility=False))
        record = answer["job"]
        assert record["state"] == "completed", record["reason"]
        escalations = kinds(answer, "escalated")
        assert escalations, [e["kind"] for e in answer["events"]]
        # Both colluders were among the first runs, and lost.
        assert bad <= set(escalations[0]["detail"]["first"]), escalations[0]
        assert sum(e["detail"]["more"] for e in escalations) <= 4
        (shard,) = answer["shards"]
        assert not bad & set(shard["providers"]), shard
        states = {e["node"]: e["state"] for e in record["executions"]}
        assert {states[node] for node in bad} == {"results_rejected"}, states
        published.add(shard["cid"])
    assert len(published) == 1, published  # one honest result, the same every time


@pytest.mark.timeout(600)
def test_the_verdict_gate_shows_an_escalation_before_it_runs(forced: Devstack) -> None:
    api = forced.api(0)
    response = httpx.post(f"{api}/api/v1/jobs", json={**spec(credibility=False), "step": True})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    def at_verdict() -> dict[str, Any] | None:
        answer = describe_job(api, job_id)
        gate = answer["gate"] or {}
        return gate if gate.get("name") == "verdict" else None

    gate = wait_until(at_verdict, timeout=120, message="the verdict gate")
    assert gate["more"] == 1 and not gate["accepted"] and not gate["rejected"], gate
    assert "margin is 2" in gate["why_more"], gate
    assert sorted(gate["votes"].values()) == [1, 2], gate
    # Nothing runs until the user steps: no escalation yet.
    assert not kinds(describe_job(api, job_id), "escalated")
    httpx.post(f"{api}/api/v1/jobs/{job_id}/step", timeout=30).raise_for_status()
    escalated = wait_until(
        lambda: kinds(describe_job(api, job_id), "escalated"), 60, message="the escalation"
    )
    assert escalated[0]["detail"]["more"] == 1, escalated

    def stepped() -> dict[str, Any] | None:
        answer = describe_job(api, job_id)
        if answer["job"]["state"] in ("completed", "error"):
            return answer
        if answer["gate"] is not None:
            httpx.post(f"{api}/api/v1/jobs/{job_id}/step", timeout=30)
        return None

    final = wait_until(stepped, JOB_TIMEOUT_S, 0.1, "the job to end")
    assert final["job"]["state"] == "completed", final["job"]["reason"]
    assert not bad_actors(forced) & set(final["shards"][0]["providers"])


@pytest.mark.timeout(900)
def test_caught_forgers_get_no_more_work_and_the_record_survives_a_restart(
    forced: Devstack,
) -> None:
    bad = bad_actors(forced)
    run_job(forced, spec(credibility=False))  # they are in it, and caught
    node = get_json(f"{forced.api(0)}/api/v1/node")
    record = node["credibility"]
    for peer in bad:
        assert record[peer]["caught"] >= 1 and record[peer]["excluded_until"], record[peer]
    honest = [peer for peer in record if peer not in bad]
    assert honest and all(record[p]["agreed"] >= 1 for p in honest), record
    assert node["requester"]["credibility"]["excluded"] == 2, node["requester"]
    said = forced.run("status", check=True).stdout
    (row,) = [line for line in said.splitlines() if line.split()[:1] == ["node-0"]]
    assert "excluded 2" in row, said

    # With credibility (the default) the caught nodes are offered nothing, whatever
    # the ranking says, so the job is unanimous at once.
    answer = run_job(forced, spec())
    assert answer["job"]["state"] == "completed", answer["job"]["reason"]
    assert not runs(answer) & bad and not kinds(answer, "escalated"), runs(answer)

    before = get_json(f"{forced.api(0)}/api/v1/node")["credibility"]
    forced.restart(forced.node_named("node-0"), *offer_bad_first(forced))
    after = get_json(f"{forced.api(0)}/api/v1/node")["credibility"]
    assert after == before
    answer = run_job(forced, spec())
    assert answer["job"]["state"] == "completed", answer["job"]["reason"]
    assert not runs(answer) & bad, runs(answer)
