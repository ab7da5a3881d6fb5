"""Failures on a real devstack (README, failures): a compute node killed outright
(SIGKILL) or restarted in the middle of a run, cancellation, full clusters that
queue, and failure messages from a node not entitled to send them.

- A node killed with ``kill -9`` while its container runs goes silent: the
  requester takes it as lost once its heartbeats stop, records the execution
  ``lost`` and a ``retry`` whose cause names the heartbeat, and the job completes
  on another node.
- A node restarted (``devstack restart``) mid-run removes the containers of its
  earlier life and reports its run lost; the job is run again elsewhere.
- A requester killed outright and started again takes its open job back, adopts
  the run that went on meanwhile, and the job completes with its results.
- ``devstack cancel`` stops every container of a c=3 job and ends it
  ``cancelled``; a second cancel, and a cancel on a node that is not the
  requester, are refused (409) naming the state or the requester; a step-mode job
  waiting at a gate can be cancelled too.
- One slot per node: a burst of docker jobs all complete (they queue while the
  nodes are full), and a job that cannot get a slot before its ``queue_timeout``
  ends ``error`` saying it queued.
- ``ExecutionHeartbeat``, ``ExecutionLost``, ``SlotFreed``, ``Cancelled`` and
  ``Status`` from a stranger are dropped and counted (``transport.dropped``), and change nothing.

No mocks: one 5-node devstack of one slot per node (``--slots 1``) shared by every
test, real node processes, py-libp2p, Docker (``busybox``). Which node runs a job
is read back from the labels of its container; every wait is a poll with a
deadline, never a fixed sleep, and no duration is asserted.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.jobs import TERMINAL
from devstack.state import NodeEntry
from node import messages
from node.executors.docker import JOB_LABEL, NODE_LABEL
from node.messages import Ack
from tests.conftest import (
    Devstack,
    containers_with,
    describe_job,
    docker_client,
    get_json,
    running_devstack,
    step_to_end,
    wait_job_end,
    wait_until,
)
from tests.integration.test_cluster import dropped, in_thread, run_forger
from tests.integration.test_offer_dispatch import own_events, story, submit

pytestmark = pytest.mark.slow

NODES = 5
# Generous: a loaded 2-core machine, often shared with other clusters.
JOB_TIMEOUT_S = 180.0
START_TIMEOUT_S = 90.0  # a job's container to be running
GONE_TIMEOUT_S = 90.0  # a stopped job's containers to be removed
# A job lands on its own requester with probability 1/5: 12 in a row, about once in
# 250 million runs.
MAX_TRIES = 12
BURST = 30


def sleeper(seconds: int, **extra: Any) -> dict[str, Any]:
    return {
        "image": "busybox:latest",
        "command": ["sh", "-c", f"sleep {seconds}; echo done"],
        **extra,
    }


def cancel(api: str, job_id: str) -> httpx.Response:
    return httpx.post(f"{api}/api/v1/jobs/{job_id}/cancel", timeout=60)


def running_containers(job_id: str) -> list[dict[str, Any]]:
    return [c for c in containers_with({JOB_LABEL: job_id}) if c["State"] == "running"]


def wait_running(job_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The job's ``count`` running containers, once there are that many."""
    return wait_until(
        lambda: len(found := running_containers(job_id)) >= count and found,
        START_TIMEOUT_S,
        0.05,
        f"{count} container(s) of job {job_id} to run",
    )


def wait_no_containers(labels: dict[str, str], what: str) -> None:
    wait_until(lambda: not containers_with(labels), GONE_TIMEOUT_S, 0.2, what)


def start_on_another_node(
    stack: Devstack, requester: NodeEntry, spec: dict[str, Any]
) -> tuple[str, NodeEntry]:
    """Submit ``spec`` to ``requester`` until its container runs on another node (the
    requester runs jobs too; a try that lands on it is cancelled); the job and its
    node, whose container is running."""
    assert stack.state is not None
    by_peer = {n.peer_id: n for n in stack.state.nodes}
    for _ in range(MAX_TRIES):
        job_id = submit(requester.api, spec)
        [container] = wait_running(job_id)
        runner = container["Labels"][NODE_LABEL]
        if runner != requester.peer_id:
            return job_id, by_peer[runner]
        assert cancel(requester.api, job_id).status_code == 200
        wait_no_containers({JOB_LABEL: job_id}, f"job {job_id}'s container to go")
    raise AssertionError(f"{MAX_TRIES} jobs in a row ran on their requester")


def retried(answer: dict[str, Any], lost: str) -> dict[str, Any]:
    """The job's retry of ``lost``'s run (its first retry, and the only one of that
    node); checks the ``lost`` execution and the retry's acceptance beside it. A
    replacement may be retried too (its heartbeat late on a loaded machine)."""
    retries = own_events(answer, "retry")
    assert retries and retries[0]["detail"]["peer"] == lost, story(answer)
    assert [e["detail"]["peer"] for e in retries].count(lost) == 1, story(answer)
    retry = retries[0]
    assert retry["detail"]["retry"] == 1, retry
    assert retry["detail"]["max_retries"] == 2, retry
    assert [e["detail"]["peer"] for e in own_events(answer, "lost")].count(lost) == 1
    assert own_events(answer, "retry_accepted"), story(answer)
    runs = {e["node"]: e["state"] for e in answer["job"]["executions"]}
    assert runs[lost] not in ("proposed", "results_accepted", "published"), runs
    published = [e for e in answer["job"]["executions"] if e["state"] == "published"]
    assert len(published) == 1 and published[0]["node"] != lost, published
    assert published[0]["stdout_preview"] == "done\n", published
    return retry


@pytest.fixture(scope="module")
def slots5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """5 nodes of one slot each, offer dispatch (the default)."""
    docker_client().close()
    state_dir = tmp_path_factory.mktemp("failures5")
    stack = Devstack(state_dir=state_dir, nodes=NODES, up_args=("--slots", "1"))
    with running_devstack(state_dir, NODES, stack) as running:
        yield running


# -- 1. a node killed outright -----------------------------------------------------


@pytest.mark.timeout(600)  # includes bringing the cluster up on a loaded machine
def test_a_killed_node_s_shard_runs_elsewhere(slots5: Devstack) -> None:
    """kill -9 of the node running a docker job: its heartbeats stop, the requester
    records its execution lost and a retry naming the heartbeat, and the job
    completes on another node. Restarted, the node removes its orphaned container."""
    assert slots5.state is not None
    requester = slots5.state.nodes[0]
    job_id, victim = start_on_another_node(slots5, requester, sleeper(6))
    try:
        slots5.kill(victim)
        answer = wait_job_end(requester.api, job_id, JOB_TIMEOUT_S)
        print(f"\nkilled {victim.name}: {story(answer)}")
        assert answer["job"]["state"] == "completed", story(answer)
        retry = retried(answer, victim.peer_id)
        assert "heartbeat" in retry["detail"]["cause"], retry
    finally:
        # Whole again for the next tests; its earlier life's container goes.
        slots5.restart(victim)
        wait_no_containers(
            {NODE_LABEL: victim.peer_id, JOB_LABEL: job_id},
            f"the restarted {victim.name} to remove its orphaned container",
        )


# -- 2. a node restarted mid-run ---------------------------------------------------


@pytest.mark.timeout(420)
def test_a_restarted_node_s_run_is_lost_and_runs_elsewhere(slots5: Devstack) -> None:
    """``devstack restart`` of the node running a docker job: no container of its
    earlier life is left, and the job is run again on another node and completes;
    the retry's cause says the node lost its run (or its heartbeat, if that lapsed
    first while the node restarted)."""
    assert slots5.state is not None
    requester = slots5.state.nodes[1]
    job_id, victim = start_on_another_node(slots5, requester, sleeper(8))
    earlier = {c["Id"] for c in containers_with({NODE_LABEL: victim.peer_id})}
    assert earlier, f"{victim.name} runs no container"

    slots5.restart(victim)

    def leftovers() -> list[str]:
        mine = containers_with({NODE_LABEL: victim.peer_id})
        return [f"{c['Id'][:12]} ({c['State']})" for c in mine if c["Id"] in earlier]

    wait_until(
        lambda: not leftovers(), GONE_TIMEOUT_S, 0.2, f"{victim.name}'s earlier containers to go"
    )
    answer = wait_job_end(requester.api, job_id, JOB_TIMEOUT_S)
    print(f"\nrestarted {victim.name}: {story(answer)}")
    assert answer["job"]["state"] == "completed", story(answer)
    cause = retried(answer, victim.peer_id)["detail"]["cause"]
    assert cause.startswith("the node lost its run") or "heartbeat" in cause, cause
    assert not leftovers()


# -- 2b. a requester killed outright and started again ----------------------------


@pytest.mark.timeout(420)
def test_a_killed_requester_resumes_its_job(slots5: Devstack, tmp_path: Path) -> None:
    """kill -9 of the requester while its job runs on another node, then ``devstack
    restart``: the requester takes the job back from its records, the run that went
    on meanwhile is adopted (its node publishes), and the job completes with its results,
    fetchable with ``devstack get``."""
    assert slots5.state is not None
    requester = slots5.state.nodes[2]
    job_id, runner = start_on_another_node(slots5, requester, sleeper(6))
    slots5.kill(requester)
    fresh = slots5.restart(requester)
    answer = wait_job_end(fresh.api, job_id, JOB_TIMEOUT_S)
    print(f"\nrestarted requester {requester.name}: {story(answer)}")
    assert answer["job"]["state"] == "completed", story(answer)
    assert own_events(answer, "resumed"), story(answer)
    published = [e for e in answer["job"]["executions"] if e["state"] == "published"]
    assert [e["node"] for e in published] == [runner.peer_id], published
    out = tmp_path / "results"
    result = slots5.run("get", job_id, "-o", str(out), check=True)
    assert [Path(p) for p in result.stdout.split()] == [out / "shard-0"], result.stdout
    assert (out / "shard-0" / "stdout").read_text() == "done\n"


# -- 3. cancel ---------------------------------------------------------------------


@pytest.mark.timeout(420)
def test_cancel_stops_every_container_of_a_job(slots5: Devstack) -> None:
    """A c=3 job of 60 s containers: a cancel on a node that is not its requester is
    refused naming the requester; ``devstack cancel`` ends it cancelled and every
    container goes; cancelling again is refused naming the state; an unknown job is
    404."""
    assert slots5.state is not None
    requester = slots5.state.nodes[2]
    job_id = submit(requester.api, sleeper(60, deal={"concurrency": 3}))
    running = wait_running(job_id, 3)
    runners = {c["Labels"][NODE_LABEL] for c in running}
    assert len(runners) == 3, running
    try:
        other = next(n for n in slots5.state.nodes if n.peer_id in runners - {requester.peer_id})
        refused = cancel(other.api, job_id)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "not_requester", refused.text
        assert requester.peer_id in refused.json()["message"], refused.text
        assert describe_job(requester.api, job_id)["job"]["state"] not in TERMINAL

        result = slots5.run("cancel", job_id, check=True)
        assert f"job {job_id}: cancelled" in result.stdout, result.stdout
    finally:
        with contextlib.suppress(httpx.HTTPError):
            cancel(requester.api, job_id)  # a no-op (409) once the CLI did it
    answer = describe_job(requester.api, job_id)
    assert answer["job"]["state"] == "cancelled", story(answer)
    assert own_events(answer, "cancelled"), story(answer)
    wait_no_containers({JOB_LABEL: job_id}, f"every container of job {job_id} to go")

    again = cancel(requester.api, job_id)
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "job_ended", again.text
    assert "cancelled" in again.json()["message"], again.text
    cli = slots5.run("cancel", job_id)
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert "409" in cli.stderr and "cancelled" in cli.stderr, cli.stderr

    unknown = cancel(requester.api, str(uuid.uuid4()))
    assert unknown.status_code == 404, unknown.text


@pytest.mark.timeout(300)
def test_cancel_a_step_mode_job_at_its_gate(slots5: Devstack) -> None:
    """A step-mode job waiting at its gate is cancelled: it ends ``cancelled`` and
    waits at no gate any more."""
    assert slots5.state is not None
    requester = slots5.state.nodes[3]
    job_id = submit(requester.api, {"engine": "noop", "command": ["echo", "gate"], "step": True})
    wait_until(
        lambda: describe_job(requester.api, job_id)["gate"] is not None,
        60,
        0.05,
        f"job {job_id} to wait at its first gate",
    )
    response = cancel(requester.api, job_id)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": job_id, "state": "cancelled"}
    answer = describe_job(requester.api, job_id)
    assert answer["job"]["state"] == "cancelled", story(answer)
    assert answer["gate"] is None, answer["gate"]
    assert own_events(answer, "cancelled"), story(answer)
    stepped = httpx.post(f"{requester.api}/api/v1/jobs/{job_id}/step", timeout=30)
    assert stepped.status_code == 409, stepped.text


# -- 4. full clusters queue --------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_burst_on_one_slot_nodes_drains_with_no_error(slots5: Devstack) -> None:
    """30 docker jobs submitted at once over 5 nodes of one slot: they queue while
    every node is full and all of them complete."""
    assert slots5.state is not None
    nodes = slots5.state.nodes
    spec = {"image": "busybox:latest", "command": ["sleep", "1"]}
    with ThreadPoolExecutor(BURST) as pool:
        apis = [nodes[i % NODES].api for i in range(BURST)]
        jobs = list(zip(apis, pool.map(submit, apis, [spec] * BURST), strict=True))
    answers = [wait_job_end(api, job_id, 400) for api, job_id in jobs]

    failed = [(a["job"]["job"]["id"], a["job"]["state"], story(a)) for a in answers]
    failed = [f for f in failed if f[1] != "completed"]
    queued = sum(bool(own_events(a, "queued")) for a in answers)
    retries = sum(len(own_events(a, "retry")) for a in answers)
    print(f"\nburst of {BURST}: {queued} queued, {retries} retries, failed {failed}")
    assert failed == []


@pytest.mark.timeout(420)
def test_a_job_past_its_queue_timeout_ends_error(slots5: Devstack) -> None:
    """Every slot taken by a long job: a waiting job says why (queued, every node
    full, its place in line); a job with ``queue_timeout: 3`` queues and ends
    ``error`` saying it queued. The blockers are cancelled after."""
    assert slots5.state is not None
    nodes = slots5.state.nodes
    blockers = [(n.api, submit(n.api, sleeper(120))) for n in nodes]
    try:

        def all_full() -> bool:
            return all(get_json(f"{n.api}/api/v1/node")["capacity"]["reserved"] >= 1 for n in nodes)

        wait_until(all_full, 120, 0.2, "every slot taken", ignore=(httpx.HTTPError,))
        for _, job_id in blockers:
            wait_running(job_id)

        # While it waits in line, its requester says why (API, and `devstack describe`).
        queued = submit(nodes[1].api, sleeper(1, queue_timeout=120))
        line = wait_until(
            lambda: next((w["why"] for w in describe_job(nodes[1].api, queued)["waiting"]), ""),
            60,
            0.2,
            f"job {queued} to say why it waits",
        )
        wait_until(
            lambda: describe_job(nodes[1].api, queued)["waiting"][0]["why"].startswith(
                f"queued: {len(nodes)} of {len(nodes)} nodes full, position 1 of"
            ),
            60,
            0.2,
            f"job {queued} to say it is queued with every node full (it said {line!r})",
        )
        shown = slots5.run("describe", queued, check=True).stdout
        assert "why        shard 0: queued:" in shown, shown
        assert cancel(nodes[1].api, queued).status_code == 200
        assert wait_job_end(nodes[1].api, queued, 60)["job"]["state"] == "cancelled"

        job_id = submit(nodes[0].api, sleeper(1, queue_timeout=3))
        answer = wait_job_end(nodes[0].api, job_id, JOB_TIMEOUT_S)
        print(f"\nqueue timeout: {story(answer)}")
        assert answer["job"]["state"] == "error", story(answer)
        reason = answer["job"]["reason"]
        assert reason.startswith("queued") and "queue_timeout" in reason, reason
        assert own_events(answer, "queued"), story(answer)
        assert not own_events(answer, "bid_accepted"), story(answer)
    finally:
        for api, blocker in blockers:
            with contextlib.suppress(httpx.HTTPError):
                cancel(api, blocker)
    for api, blocker in blockers:
        assert wait_job_end(api, blocker, 60)["job"]["state"] == "cancelled"
        wait_no_containers({JOB_LABEL: blocker}, f"blocker {blocker}'s container to go")


# -- 5. failure messages from a stranger -------------------------------------------


@pytest.mark.timeout(300)
def test_failure_messages_from_a_stranger_are_dropped(slots5: Devstack) -> None:
    """A stranger's ExecutionHeartbeat and ExecutionLost (to the requester: it holds
    no accepted bid), SlotFreed (to the requester: it declined no offer), Cancelled
    and Status (to the node running the job: it is not the requester) are refused and
    counted; the job goes on and completes, with no retry."""
    state = slots5.state
    assert state is not None
    requester = state.nodes[4]
    by_peer = {n.peer_id: n for n in state.nodes}
    job_id = submit(requester.api, {"engine": "noop", "command": ["echo", "x"], "step": True})
    wait_until(
        lambda: describe_job(requester.api, job_id)["gate"],
        60,
        0.05,
        f"job {job_id} to wait at its first gate",
    )
    executions = describe_job(requester.api, job_id)["job"]["executions"]
    [runner] = [e["node"] for e in executions if e["state"] == "proposed"]
    compute = by_peer[runner]
    seen: dict[str, Any] = {}

    async def refused(
        forger: Any, target: NodeEntry, message: messages.Message, reason: str
    ) -> None:
        before = (await in_thread(dropped, target.api)).get(f"direct_{reason}", 0)
        ack = await forger.send(target.peer_id, message)
        assert ack == Ack(False, reason), (type(message).__name__, ack)
        after = (await in_thread(dropped, target.api)).get(f"direct_{reason}", 0)
        assert after > before, (type(message).__name__, reason, before, after)

    async def body(forger: Any) -> None:
        seen["forger"] = forger.peer_id
        for node in {requester.peer_id: requester, compute.peer_id: compute}.values():
            info = await in_thread(get_json, f"{node.api}/api/v1/node")
            forger.remember_addrs(node.peer_id, info["direct_addrs"])
        beat = messages.ExecutionHeartbeat(job_id=job_id, shard=0)
        await refused(forger, requester, beat, "not_accepted")
        lost = messages.ExecutionLost(job_id=job_id, shard=0, reason="forged")
        await refused(forger, requester, lost, "not_accepted")
        freed = messages.SlotFreed(job_id=job_id, slots=1)
        await refused(forger, requester, freed, "not_offered")
        stop = messages.Cancelled(job_id=job_id, reason="forged", shards=[0])
        await refused(forger, compute, stop, "not_requester")
        status = messages.Status(job_id=job_id, shard=0)
        await refused(forger, compute, status, "not_requester")

    run_forger([requester.multiaddr, compute.multiaddr], body)
    still = describe_job(requester.api, job_id)
    assert still["gate"] is not None, story(still)  # the forged Cancelled stopped nothing
    final = step_to_end(requester.api, job_id, 90)
    assert final["job"]["state"] == "completed", story(final)
    assert not own_events(final, "retry") and not own_events(final, "lost"), story(final)
    assert [e["node"] for e in final["job"]["executions"]] == [runner]
    assert all(e["detail"].get("peer") != seen["forger"] for e in final["events"])
