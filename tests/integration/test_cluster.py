"""A real devstack end to end: node processes, libp2p gossip and streams, Docker jobs.

No mocks. Most tests share one 5-node cluster (``cluster5``); the tests that need
a cluster of their own (stale state, ``down`` with a container running) use a
2-node one. Every wait is a poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from devstack import state as st
from devstack.cluster import CONTAINER_LABEL, free_ports
from devstack.jobs import TERMINAL
from devstack.state import ClusterState, NodeEntry
from node import messages
from node.messages import Ack
from node.models import Job, JobSpec, new_job_id
from tests.conftest import (
    Devstack,
    describe_failure,
    docker_client,
    get_json,
    labelled_containers,
    running_devstack,
    undo_libp2p_patches,
    wait_job_end,
    wait_until,
)
from tests.conftest import (
    describe_job as describe,
)

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 180.0
# What `devstack describe` must show for a completed docker job, each with a time.
REQUIRED_KINDS = [
    "created",
    "offered",
    "bid_accepted",
    "bidding_closed",
    "running",
    "proposed",
    "results_accepted",
    "published",
    "completed",
]
# "  20:51:04.826Z  +     0.0ms  3Wi89Zkh        created          concurrency=3"
# "  20:51:04.900Z  +    73.2ms  3Wi89Zkh   #0  bid_accepted     ...3bc8d1"
EVENT_LINE = re.compile(
    r"^  (?P<time>\d{2}:\d{2}:\d{2}\.\d{3})Z  \+\s*(?P<offset>-?\d+\.\d)ms  (?P<node>\S+)"
    r" (?P<shard>[ #\d]{4})  (?P<kind>\S+)"
)


# -- helpers ---------------------------------------------------------------------


def wait_job(api: str, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    return wait_job_end(api, job_id, timeout, interval=0.2)


def dropped(api: str) -> dict[str, int]:
    return get_json(f"{api}/api/v1/node")["transport"]["dropped"]


def submit_http(api: str, spec: dict[str, Any]) -> str:
    response = httpx.post(f"{api}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit_cli(stack: Devstack, *args: str) -> str:
    """``devstack submit --id-only ARGS`` and return the job id."""
    result = stack.run("submit", "--id-only", *args, check=True)
    job_id = result.stdout.strip().splitlines()[0]
    uuid.UUID(job_id)
    return job_id


def event_lines(describe_text: str) -> list[re.Match[str]]:
    """The lines of the ``events`` section of ``devstack describe``, each parsed."""
    lines = describe_text.splitlines()
    assert "events" in lines, describe_text
    section = lines[lines.index("events") + 1 :]
    assert section, "describe shows no events"
    parsed = []
    for line in section:
        match = EVENT_LINE.match(line)
        assert match, f"event line without a time: {line!r}"
        parsed.append(match)
    return parsed


def check_describe(stack: Devstack, job_id: str, *, concurrency: int) -> dict[str, Any]:
    """``describe`` (text and --json) of a completed job shows every event with a time."""
    answer = json.loads(stack.run("describe", job_id, "--json", check=True).stdout)
    record, events = answer["job"], answer["events"]
    requester = answer["requester"]
    assert record["state"] == "completed", record
    assert answer["node"] == requester, "describe must answer from the job's requester"

    # JSON: every event has a float `at`; the requester's own are in time order.
    assert events
    for event in events:
        assert isinstance(event["at"], float), event
        assert event["at"] >= record["job"]["created_at"] - 1e-3, event
    own = [e["at"] for e in events if e["node"] == requester]
    assert own == sorted(own), f"requester's events out of time order: {events}"

    # Text: one timed line per event, and every phase of the job is there.
    text = stack.run("describe", job_id, check=True).stdout
    lines = event_lines(text)
    assert len(lines) == len(events), text
    kinds = [m["kind"] for m in lines]
    published = {e["node"] for e in record["executions"] if e["state"] == "published"}
    assert len(published) == concurrency, record["executions"]
    required = list(REQUIRED_KINDS)
    if requester not in published:
        # The requester records "running" only for a shard it runs itself: a remote
        # compute node does not report when its container starts (see the report).
        required.remove("running")
    missing = [k for k in required if k not in kinds]
    assert not missing, f"describe lacks {missing}:\n{text}"
    assert kinds.count("results_accepted") == concurrency, text
    assert kinds[0] == "created", text
    return answer


def check_get(stack: Devstack, job_id: str, out: Path, *, results: int) -> None:
    """``devstack get JOB -o DIR`` writes ``results`` shards whose stdout is hello."""
    result = stack.run("get", job_id, "-o", str(out), check=True)
    paths = [Path(p) for p in result.stdout.split()]
    assert paths == [out / f"shard-{k}" for k in range(results)], result.stdout
    for path in paths:
        assert (path / "stdout").read_text() == "hello\n"
        assert (path / "exitCode").read_text().strip() == "0"


# -- forger: a real libp2p host with its own key, outside the cluster ------------


def run_forger(connect_to: list[str], body: Callable[[Any], Awaitable[None]]) -> None:
    """In ``trio.run``: start a py-libp2p host with a fresh ed25519 key, dial
    ``connect_to`` (multiaddrs; a repeated one is dialled once) and run
    ``body(transport)``.

    Its own gossip validator is replaced by one that accepts everything, so it
    can publish what an honest node would never send.
    """
    from libp2p.crypto.ed25519 import create_new_key_pair

    from node.p2p.transport import Transport

    async def ignore_gossip(sender: str, message: messages.Message) -> None:
        return None

    async def refuse_direct(sender: str, message: messages.Message) -> Ack:
        return Ack(False, "forger")

    async def main() -> None:
        transport = Transport(
            create_new_key_pair(),
            listen_port=free_ports(1)[0],
            gossip_check=lambda sender, message: None,
            on_gossip=ignore_gossip,
            on_direct=refuse_direct,
        )
        peers = list(dict.fromkeys(connect_to))
        async with transport.running():
            pubsub = transport._gossip.pubsub  # the one private reach: our own validator off
            pubsub.set_topic_validator(messages.JOBS_TOPIC, lambda forwarder, msg: True, False)
            async with trio.open_nursery() as nursery:
                for addr in peers:
                    nursery.start_soon(transport.connect, addr)
            connected = transport.statistics().connected_peers
            assert connected == len(peers), f"forger connected to {connected} peers"
            await body(transport)

    with undo_libp2p_patches():  # the Transport patches py-libp2p in this process
        trio.run(main)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking HTTP from inside the forger's trio loop, off the loop."""
    return await trio.to_thread.run_sync(lambda: fn(*args))


async def publish_until(
    publish: Callable[[], Awaitable[None]], moved: Callable[[], bool], timeout: float, what: str
) -> None:
    """Publish again and again until ``moved()`` (the gossip mesh needs a heartbeat
    to take a new peer in, and validation is asynchronous)."""
    deadline = trio.current_time() + timeout
    while True:
        await publish()
        with trio.move_on_after(1.0):
            while True:
                if await in_thread(moved):
                    return
                await trio.sleep(0.1)
        if trio.current_time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


# -- the shared 5-node cluster ---------------------------------------------------


@pytest.fixture(scope="module")
def early_jobs(cluster5: Devstack) -> dict[str, str]:
    """Jobs submitted at the start so their waits overlap the other tests."""
    return {
        "c3": submit_cli(cluster5, "--concurrency", "3", "busybox", "--", "echo", "hello"),
        "nosuch": submit_cli(cluster5, "nosuch-image:1", "--", "echo", "hello"),
    }


@pytest.mark.timeout(600)  # includes bringing the cluster up on a loaded machine
def test_submit_wait_concurrency_1(
    cluster5: Devstack, early_jobs: dict[str, str], tmp_path: Path
) -> None:
    result = cluster5.run(
        "submit", "--id-only", "--wait", "--wait-timeout", str(JOB_TIMEOUT_S),
        "busybox", "--", "echo", "hello",
        timeout=JOB_TIMEOUT_S + 60,
    )  # fmt: skip
    assert result.returncode == 0, describe_failure(result)
    job_id, stdout = result.stdout.split("\n", 1)
    uuid.UUID(job_id)
    assert stdout == "hello\n"
    check_describe(cluster5, job_id, concurrency=1)
    check_get(cluster5, job_id, tmp_path / "out", results=1)


@pytest.mark.timeout(300)
def test_concurrency_3(cluster5: Devstack, early_jobs: dict[str, str], tmp_path: Path) -> None:
    job_id = early_jobs["c3"]
    final = wait_job(cluster5.api(0), job_id)
    assert final["job"]["state"] == "completed", final["job"]
    answer = check_describe(cluster5, job_id, concurrency=3)
    result_ids = {e["result_id"] for e in answer["job"]["executions"] if e["state"] == "published"}
    assert len(result_ids) == 1, "three runs of echo hello must give one result"
    check_get(cluster5, job_id, tmp_path / "out", results=1)


@pytest.mark.timeout(120)
def test_unknown_image_ends_error_naming_it(cluster5: Devstack, early_jobs: dict[str, str]) -> None:
    # The bid window is 5 s; give a loaded machine plenty more.
    final = wait_job(cluster5.api(0), early_jobs["nosuch"], timeout=90)
    record = final["job"]
    assert record["state"] == "error", record
    assert "nosuch-image:1" in record["reason"], record["reason"]
    assert not [e for e in record["executions"] if e["state"] in ("accepted", "running")]
    # `devstack describe` shows the reason too.
    result = cluster5.run("describe", early_jobs["nosuch"], check=True)
    assert "nosuch-image:1" in result.stdout


@pytest.mark.timeout(120)
def test_status_and_list_json(cluster5: Devstack, early_jobs: dict[str, str]) -> None:
    status = json.loads(cluster5.run("status", "--json", check=True).stdout)
    assert set(status) == {"nodes", "state_file"}
    assert status["state_file"] == str(cluster5.state_dir / "cluster.json")
    assert [n["name"] for n in status["nodes"]] == [f"node-{i}" for i in range(5)]
    assert cluster5.state is not None
    for row, entry in zip(status["nodes"], cluster5.state.nodes, strict=True):
        assert set(row) == {
            "name", "pid", "peer_id", "api", "alive", "healthy", "bad_actor", "host",
            "gossip_peers", "mesh", "network_size", "jobs", "dropped", "credibility",
        }  # fmt: skip
        assert row["bad_actor"] is False
        assert row["host"] is None  # all on 127.0.0.1: no simulated hosts
        assert (row["pid"], row["peer_id"], row["api"]) == (entry.pid, entry.peer_id, entry.api)
        assert row["alive"] and row["healthy"], row
        assert row["gossip_peers"] >= 1 and row["network_size"] == 5, row

    listed = json.loads(cluster5.run("list", "--json", check=True).stdout)
    assert set(listed) == {"jobs"}
    ids = [j["job"]["id"] for j in listed["jobs"]]
    assert set(early_jobs.values()) <= set(ids)
    for record in listed["jobs"]:
        assert set(record) >= {"job", "state", "updated_at", "reason", "executions"}
        assert set(record["job"]) >= {"id", "requester", "spec", "created_at"}
    created = [j["job"]["created_at"] for j in listed["jobs"]]
    assert created == sorted(created, reverse=True), "list is newest first"

    # The text forms work too.
    assert "5/5 nodes healthy" in cluster5.run("status", check=True).stdout
    assert early_jobs["c3"] in cluster5.run("list", check=True).stdout


GOOD_SPEC: dict[str, Any] = {"image": "busybox", "command": ["echo", "hello"]}

BAD_SPECS = [
    ("unknown engine", {**GOOD_SPEC, "engine": "wasm"}, "engine"),
    ("empty image", {**GOOD_SPEC, "image": ""}, "image"),
    ("negative concurrency", {**GOOD_SPEC, "deal": {"concurrency": -1}}, "deal.concurrency"),
    (
        "concurrency over network size",
        {**GOOD_SPEC, "deal": {"concurrency": 50}},
        "deal.concurrency",
    ),
    ("unknown field", {**GOOD_SPEC, "colour": "blue"}, "colour"),
    ("wrong type", {**GOOD_SPEC, "timeout": "soon"}, "timeout"),
    ("no command", {"image": "busybox"}, "command"),
    ("confidence above concurrency", {**GOOD_SPEC, "deal": {"confidence": 2}}, "deal.confidence"),
    ("unknown nested field", {**GOOD_SPEC, "deal": {"bogus": 1}}, "deal.bogus"),
    (
        "int too big for the wire",
        {**GOOD_SPEC, "resources": {"memory": 10**30}},
        "resources.memory",
    ),
    # Accepted, its JobAnnounced would exceed MAX_MESSAGE_BYTES and be dropped everywhere.
    ("too big for an announce", {**GOOD_SPEC, "command": ["echo", *["x" * 8000] * 40]}, "command"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "spec", "field"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_refused(
    cluster5: Devstack, name: str, spec: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{cluster5.api(1)}/api/v1/jobs", json=spec, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "invalid_spec"
    assert body["message"] and "Traceback" not in body["message"]
    assert body["field"] == field, body


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "body",
    [b"not json {", b"", b"[1, 2]", b"\xff\xfe", b'{"image": "\xff", "command": ["x"]}'],
    ids=["garbage", "empty", "array", "bytes", "not utf-8"],
)
def test_non_json_body_is_refused(cluster5: Devstack, body: bytes) -> None:
    response = httpx.post(
        f"{cluster5.api(1)}/api/v1/jobs",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "invalid_spec" and answer["field"] == "body", answer
    assert answer["message"]


@pytest.mark.timeout(120)
def test_unknown_route_and_bad_query(cluster5: Devstack) -> None:
    api = cluster5.api(1)
    response = httpx.get(f"{api}/api/v1/no-such-thing", timeout=30)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    response = httpx.get(f"{api}/api/v1/jobs/{uuid.uuid4()}", timeout=30)
    assert response.status_code == 404
    body = response.json()
    assert (body["error"], body["field"]) == ("not_found", "job_id"), body
    assert body["message"]
    for query in ("limit=abc", "limit=0", "limit=100000", "role=boss", "state=sleeping"):
        response = httpx.get(f"{api}/api/v1/jobs?{query}", timeout=30)
        assert response.status_code == 400, (query, response.text)
        body = response.json()
        assert body["error"] == "bad_parameter", body
        assert body["field"] == query.split("=")[0], body


@pytest.mark.timeout(240)
def test_node_still_serves_after_bad_input(cluster5: Devstack) -> None:
    api = cluster5.api(1)
    health = get_json(f"{api}/api/v1/healthz")
    assert health["ok"] and health["ready"], health
    job_id = submit_http(api, {**GOOD_SPEC, "deal": {"concurrency": 2}})
    final = wait_job(api, job_id)
    assert final["job"]["state"] == "completed", final["job"]
    published = [e for e in final["job"]["executions"] if e["state"] == "published"]
    assert len(published) == 2
    assert all(e["stdout_preview"] == "hello\n" for e in published)


@pytest.mark.timeout(240)
def test_forged_direct_messages_are_dropped(cluster5: Devstack) -> None:
    """A stranger's BidAccepted (to the compute node) and ResultsProposed (to the
    requester) for a running job are refused, counted, and change nothing."""
    state = cluster5.state
    assert state is not None
    requester = state.nodes[0]
    by_peer = {n.peer_id: n for n in state.nodes}
    seen: dict[str, Any] = {}

    async def body(forger: Any) -> None:
        for node in state.nodes:  # job messages go host to host, not over gossip links
            info = await in_thread(get_json, f"{node.api}/api/v1/node")
            forger.remember_addrs(node.peer_id, info["direct_addrs"])
        spec = {"image": "busybox", "command": ["sleep", "5"]}
        job_id = seen["job"] = await in_thread(submit_http, requester.api, spec)

        def accepted_node() -> str | None:
            record = describe(requester.api, job_id)["job"]
            assert record["state"] not in TERMINAL, record
            nodes = [
                e["node"]
                for e in record["executions"]
                if e["state"] in ("accepted", "running", "proposed")
            ]
            return nodes[0] if record["state"] == "running" and len(nodes) == 1 else None

        compute_peer = await in_thread(
            lambda: wait_until(accepted_node, 90, 0.05, f"a node accepted for {job_id}")
        )
        compute = by_peer[compute_peer]
        seen["compute"] = compute

        before = await in_thread(dropped, compute.api)
        ack = await forger.send(compute.peer_id, messages.BidAccepted(job_id=job_id))
        assert ack == Ack(False, "not_requester"), ack
        after = await in_thread(dropped, compute.api)
        assert after.get("direct_not_requester", 0) > before.get("direct_not_requester", 0)

        before = await in_thread(dropped, requester.api)
        forged = messages.ResultsProposed(
            job_id=job_id, shard=0, sealed_result=b"f" * 64, exit_code=0, stdout_preview="forged\n"
        )
        ack = await forger.send(requester.peer_id, forged)
        assert ack == Ack(False, "not_accepted"), f"{ack} (job must still be running)"
        after = await in_thread(dropped, requester.api)
        assert after.get("direct_not_accepted", 0) > before.get("direct_not_accepted", 0)
        seen["forger"] = forger.peer_id

    run_forger([n.multiaddr for n in state.nodes], body)

    final = wait_job(requester.api, seen["job"])
    record = final["job"]
    assert record["state"] == "completed", record
    nodes = {e["node"] for e in record["executions"]}
    assert seen["forger"] not in nodes
    [run] = [e for e in record["executions"] if e["state"] == "published"]
    assert run["node"] == seen["compute"].peer_id
    assert run["result_id"] != "f" * 64 and run["stdout_preview"] == ""
    assert all(e["detail"].get("peer") != seen["forger"] for e in final["events"])


@pytest.mark.timeout(180)
def test_forged_gossip_announce_is_dropped(cluster5: Devstack) -> None:
    """A JobAnnounced naming another node as requester, signed by a stranger,
    is dropped by the first node that sees it and reaches no node."""
    state = cluster5.state
    assert state is not None
    target, victim = state.nodes[2], state.nodes[1]
    job_id = new_job_id()
    job = Job(
        id=job_id,
        requester=victim.peer_id,
        spec=JobSpec(image="busybox", command=["echo", "forged"]),
        created_at=time.time(),
    )
    announce = messages.JobAnnounced(job_id=job_id, job=job, requester_addrs=[victim.multiaddr])
    before = dropped(target.api).get("gossip_not_requester", 0)

    async def body(forger: Any) -> None:
        await publish_until(
            lambda: forger.publish(announce),
            lambda: dropped(target.api).get("gossip_not_requester", 0) > before,
            timeout=60,
            what=f"{target.name} to count the forged announce",
        )

    run_forger([target.multiaddr], body)
    for node in state.nodes:
        response = httpx.get(f"{node.api}/api/v1/jobs/{job_id}", timeout=30)
        assert response.status_code == 404, f"{node.name} has the forged job: {response.text}"
    assert get_json(f"{target.api}/api/v1/healthz")["ok"]


@pytest.mark.timeout(180)
def test_garbage_on_a_gossip_stream_is_dropped(cluster5: Devstack) -> None:
    """Bytes that are not a pubsub RPC at all, on a gossip stream: py-libp2p would
    let the protobuf error end the node; it resets the stream and counts it."""
    from libp2p.peer.id import ID
    from libp2p.utils.varint import encode_varint_prefixed

    from node.p2p.gossip import GOSSIP_PROTOCOLS

    state = cluster5.state
    assert state is not None
    target = state.nodes[2]
    before = dropped(target.api).get("gossip_rpc_malformed", 0)

    async def body(forger: Any) -> None:
        stream = await forger._host.new_stream(ID.from_base58(target.peer_id), GOSSIP_PROTOCOLS)
        try:
            # 0xff...: a field with wire type 7, which no protobuf message may hold
            await stream.write(encode_varint_prefixed(b"\xff" * 64))
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
        await in_thread(
            lambda: wait_until(
                lambda: dropped(target.api).get("gossip_rpc_malformed", 0) > before,
                timeout=60,
                interval=0.2,
                message=f"{target.name} to count the garbage",
            )
        )

    run_forger([target.multiaddr], body)
    assert st.is_alive(target.pid, target.started), f"{target.name} died"
    health = get_json(f"{target.api}/api/v1/healthz")
    assert health["ok"] and health["ready"], health


def not_utf8(message: messages.Message, text: str) -> bytes:
    """``message`` encoded, with the string ``text`` in it made invalid UTF-8:
    well-formed msgpack that no node can decode."""
    data = bytearray(messages.encode(message))
    at = data.index(text.encode())
    data[at] = 0x80  # a continuation byte cannot start a character
    return bytes(data)


MALFORMED = {
    # 0xc1 is never valid msgpack
    "garbage": lambda: b"\xc1" + os.urandom(64),
    "not utf-8": lambda: not_utf8(
        messages.BiddingClosed(job_id="zzzz-job", requester="zzzz-peer"), "zzzz-job"
    ),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_gossip_is_dropped(cluster5: Devstack, kind: str) -> None:
    state = cluster5.state
    assert state is not None
    target = state.nodes[3]
    before = dropped(target.api).get("gossip_malformed", 0)

    async def body(forger: Any) -> None:
        await publish_until(
            lambda: forger._gossip.pubsub.publish(messages.JOBS_TOPIC, MALFORMED[kind]()),
            lambda: dropped(target.api).get("gossip_malformed", 0) > before,
            timeout=60,
            what=f"{target.name} to count the malformed message",
        )

    run_forger([target.multiaddr], body)
    assert st.is_alive(target.pid, target.started), f"{target.name} died"
    health = get_json(f"{target.api}/api/v1/healthz")
    assert health["ok"] and health["ready"], health


@pytest.mark.timeout(180)
def test_malformed_direct_messages_are_refused(cluster5: Devstack) -> None:
    """On a warm stream of the job protocol: a well-framed request that is not a
    message gets a negative ack and is counted; bytes that are not frames at all
    end the stream (nothing after them can be framed) and are counted too."""
    from libp2p.peer.id import ID

    from node.p2p.frames import HEADER, FrameDecoder, Kind, encode_frame

    state = cluster5.state
    assert state is not None
    target = state.nodes[4]
    before = dropped(target.api).get("direct_malformed", 0)
    malformed_streams = get_json(f"{target.api}/api/v1/node")["transport"]["streams"]["malformed"]
    acks: list[Ack] = []

    async def body(forger: Any) -> None:
        info = await in_thread(get_json, f"{target.api}/api/v1/node")
        forger.remember_addrs(target.peer_id, info["direct_addrs"])
        # Raw frames, so through the forger's direct host (job messages' host).
        stream = await forger._direct.new_stream(
            ID.from_base58(target.peer_id), [messages.JOB_PROTOCOL]
        )
        try:
            decoder = FrameDecoder()
            for request_id, make in enumerate(MALFORMED.values(), start=1):
                await stream.write(encode_frame(Kind.REQUEST, request_id, make()))
                frames: list[Any] = []
                with trio.move_on_after(30) as waited:
                    while not frames:
                        frames = decoder.feed(await stream.read(1 << 16))
                assert not waited.cancelled_caught, f"no reply to request {request_id} in 30 s"
                [reply] = frames
                assert (reply.kind, reply.request_id) == (Kind.REPLY, request_id)
                acks.append(messages.decode_ack(reply.payload))
            await stream.write(HEADER.pack(3, 9, 1) + b"abc")  # kind 9: not a frame
            with trio.move_on_after(30) as waited:
                with contextlib.suppress(Exception):  # reset or closed: either ends it
                    while await stream.read(1 << 16):
                        pass
            assert not waited.cancelled_caught, "the stream did not end in 30 s"
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    run_forger([target.multiaddr], body)
    assert [a.ok for a in acks] == [False, False] and all(a.error for a in acks), acks
    assert dropped(target.api).get("direct_malformed", 0) == before + 2
    streams = get_json(f"{target.api}/api/v1/node")["transport"]["streams"]
    assert streams["malformed"] == malformed_streams + 1, streams
    assert st.is_alive(target.pid, target.started), f"{target.name} died"
    assert get_json(f"{target.api}/api/v1/healthz")["ok"]


@pytest.mark.timeout(180)
def test_forged_offers_and_unoffered_answers_are_dropped(cluster5: Devstack) -> None:
    """An offer naming another node as its requester is refused and counted, and the
    job is not taken; a bid or a decline on a shard that was offered to others (not
    gossiped) is refused and counted by its requester."""
    state = cluster5.state
    assert state is not None
    target, victim, requester = state.nodes[3], state.nodes[1], state.nodes[0]
    job_id = new_job_id()
    job = Job(
        id=job_id,
        requester=victim.peer_id,
        spec=JobSpec(image="busybox", command=["echo", "forged"], engine="noop"),
        created_at=time.time(),
    )
    seen: dict[str, Any] = {}

    async def body(forger: Any) -> None:
        seen["forger"] = forger.peer_id
        for node in (target, requester):
            info = await in_thread(get_json, f"{node.api}/api/v1/node")
            forger.remember_addrs(node.peer_id, info["direct_addrs"])
        before = await in_thread(dropped, target.api)
        ack = await forger.send(target.peer_id, messages.JobOffered(job_id=job_id, job=job))
        seen["offer"] = ack
        after = await in_thread(dropped, target.api)
        assert after.get("direct_not_requester", 0) == before.get("direct_not_requester", 0) + 1

        spec = {"engine": "noop", "command": ["sleep"], "step": True}  # waits at a gate
        real = seen["job"] = await in_thread(submit_http, requester.api, spec)
        await in_thread(
            lambda: wait_until(
                lambda: describe(requester.api, real)["gate"] is not None,
                60,
                0.05,
                f"job {real} to wait at its first gate",
            )
        )
        before = await in_thread(dropped, requester.api)
        for answer in (
            messages.Bid(job_id=real),
            messages.OfferDeclined(job_id=real, reason="full"),
        ):
            ack = await forger.send(requester.peer_id, answer)
            assert ack == Ack(False, "not_offered"), ack
        after = await in_thread(dropped, requester.api)
        assert after.get("direct_not_offered", 0) == before.get("direct_not_offered", 0) + 2

    run_forger([target.multiaddr, requester.multiaddr], body)
    assert seen["offer"] == Ack(False, "not_requester"), seen["offer"]
    for node in state.nodes:
        response = httpx.get(f"{node.api}/api/v1/jobs/{job_id}", timeout=30)
        assert response.status_code == 404, f"{node.name} took the forged offer: {response.text}"

    def stepped_to_the_end() -> dict[str, Any] | None:
        answer = describe(requester.api, seen["job"])
        if answer["job"]["state"] in TERMINAL:
            return answer
        if answer["gate"] is not None:
            httpx.post(f"{requester.api}/api/v1/jobs/{seen['job']}/step", timeout=30)
        return None

    final = wait_until(stepped_to_the_end, 90, 0.1, "the stepped job to end")
    assert final["job"]["state"] == "completed", final["job"]
    assert all(e["detail"].get("peer") != seen.get("forger") for e in final["events"])


@pytest.mark.timeout(180)
def test_profile_of_a_running_node(cluster5: Devstack) -> None:
    """``devstack profile`` writes HTML, text and speedscope JSON of a node's loop,
    taken while the node requests jobs, so its own code is in the samples."""
    argv = [sys.executable, "-m", "devstack.cli", "--state-dir", str(cluster5.state_dir)]
    with subprocess.Popen(
        [*argv, "profile", "1", "--seconds", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DEVSTACK_DIR"},
    ) as profiling:
        deadline = time.monotonic() + 90
        while profiling.poll() is None and time.monotonic() < deadline:
            submit_http(cluster5.api(1), {"engine": "noop", "command": ["echo", "profiled"]})
        out, err = profiling.communicate(timeout=90)
    assert profiling.returncode == 0, err
    saved = sorted((cluster5.state_dir / "profiles").glob("node-1-*"))
    by_suffix = {"".join(p.suffixes): p for p in saved}
    assert set(by_suffix) == {".html", ".txt", ".speedscope.json"}, saved
    assert "<html" in by_suffix[".html"].read_text().lower()
    assert "samples over 3s" in out and "summed over" not in out, out
    speedscope = json.loads(by_suffix[".speedscope.json"].read_text())
    files = {f.get("file") or "" for f in speedscope["shared"]["frames"]}
    assert any("/node/" in f for f in files), sorted(files)
    assert "node/" in by_suffix[".txt"].read_text()


@pytest.mark.timeout(120)
def test_one_profile_at_a_time(cluster5: Devstack) -> None:
    """A second profile of a node while one runs is refused (409), not queued."""
    url = f"{cluster5.api(2)}/api/v1/debug/profile?seconds=5"
    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda _: httpx.post(url, timeout=60).status_code, range(2)))
    assert codes == [200, 409], codes
    bad = httpx.post(f"{cluster5.api(2)}/api/v1/debug/profile?seconds=0", timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "seconds", bad.text


@pytest.mark.timeout(240)
def test_locks_and_stalls_of_every_node(cluster5: Devstack) -> None:
    """After a job it requested, a node reports its own locks (sqlite store, py-libp2p's
    yamux) and loop; ``devstack locks`` merges the five into one table."""
    api = cluster5.api(3)
    job_id = submit_http(api, {"engine": "noop", "command": ["echo", "locks"]})
    assert wait_job(api, job_id)["job"]["state"] == "completed"
    report = get_json(f"{api}/api/v1/debug/locks")
    assert report["lock_warn_ms"] == 10.0
    acquired = {lock["name"]: lock["acquisitions"] for lock in report["locks"]}
    assert acquired.get("store.sqlite", 0) > 0, acquired
    assert acquired.get("libp2p.yamux.write", 0) > 0, acquired
    assert report["stalls"]["steps"] > 0 and report["stalls"]["threshold_ms"] == 20.0

    result = cluster5.run("locks", "--top", "3")
    assert result.returncode == 0, describe_failure(result)
    out = result.stdout
    assert "merged over 5 node(s)" in out and "loop stalls (steps over 20 ms)" in out, out
    assert "LOCK" in out or "no contention" in out, out
    bad = cluster5.run("locks", "--top", "0")
    assert bad.returncode == 2 and "--top" in bad.stderr, bad.stderr


@pytest.mark.timeout(120)
def test_second_up_is_refused(cluster5: Devstack) -> None:
    before = (cluster5.state_dir / "cluster.json").read_bytes()
    result = cluster5.run("up", "--nodes", "2", "--detach")
    assert result.returncode == 1, describe_failure(result)
    assert "already running" in result.stderr and "devstack down" in result.stderr, result.stderr
    # The live cluster is untouched.
    assert (cluster5.state_dir / "cluster.json").read_bytes() == before
    assert cluster5.state is not None
    assert len(st.live_nodes(cluster5.state)) == 5


@pytest.mark.timeout(300)
def test_restarted_node_keeps_its_jobs(cluster5: Devstack) -> None:
    """Restart node 0 after it requested jobs of its own: it keeps every job it knew
    (records and events) and requests again; it is ready again when the test ends."""
    api = cluster5.api(0)
    mine = [submit_http(api, {"engine": "noop", "command": ["echo", "kept"]}) for _ in range(2)]
    for job_id in mine:
        assert wait_job(api, job_id)["job"]["state"] == "completed"
    jobs_before = {j["job"]["id"]: j for j in get_json(f"{api}/api/v1/jobs?limit=1000")["jobs"]}
    assert set(mine) <= set(jobs_before)
    events_before = {
        job_id: get_json(f"{api}/api/v1/jobs/{job_id}/events")["events"] for job_id in jobs_before
    }
    assert cluster5.state is not None
    old = cluster5.state.nodes[0]

    result = cluster5.run("restart", "0", check=True)
    assert "restarted node-0" in result.stdout
    state = cluster5.reload()
    assert state is not None
    new = state.nodes[0]
    assert new.pid != old.pid and st.is_alive(new.pid, new.started)
    assert not st.is_alive(old.pid, old.started)
    assert (new.api, new.peer_id) == (old.api, old.peer_id)

    cluster5.wait_ready(new, timeout=180)  # healthy and back in the mesh

    jobs_after = {j["job"]["id"]: j for j in get_json(f"{api}/api/v1/jobs?limit=1000")["jobs"]}
    assert set(jobs_before) <= set(jobs_after)
    for job_id, before in jobs_before.items():
        after = jobs_after[job_id]
        if before["state"] in TERMINAL:
            assert after["state"] == before["state"], (job_id, before, after)
        events = get_json(f"{api}/api/v1/jobs/{job_id}/events")["events"]
        assert events[: len(events_before[job_id])] == events_before[job_id]
        # And the CLI's describe finds the full story.
        if before["job"]["requester"] == new.peer_id:
            answer = json.loads(cluster5.run("describe", job_id, "--json", check=True).stdout)
            assert answer["events"][: len(events_before[job_id])] == events_before[job_id]

    # It is back in the network: it can request a job again.
    result = cluster5.run(
        "submit", "--engine", "noop", "--node", "0", "--wait", "--wait-timeout", "120",
        "none", "--", "echo", "again", timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, describe_failure(result)
    assert result.stdout == "echo again\n"  # the noop executor prints its command


# -- 2-node clusters of their own ------------------------------------------------


def dead_process() -> tuple[int, float]:
    """The pid and start time of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = wait_until(
            lambda: st.process_started(proc.pid), timeout=10, message="a child to start"
        )
    finally:
        proc.kill()
        proc.wait()
    assert not st.is_alive(proc.pid, started)
    return proc.pid, started


@pytest.fixture(scope="module")
def stale_then_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A cluster.json left by a crashed cluster (dead pids, a stray container), then
    ``devstack up --nodes 2`` over it."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    from node.p2p.identity import peer_id_of

    state_dir = tmp_path_factory.mktemp("devstack2")
    entries = []
    for i in range(2):
        pid, started = dead_process()
        peer_id = peer_id_of(create_new_key_pair())
        entries.append(
            NodeEntry(
                index=i,
                pid=pid,
                started=started,
                peer_id=peer_id,
                multiaddr=f"/ip4/127.0.0.1/tcp/9/p2p/{peer_id}",
                api="http://127.0.0.1:9",
                swarm_port=9,
                api_port=9,
                data_dir=str(state_dir / "data" / f"node-{i}"),
                log_file=str(state_dir / "logs" / f"node-{i}.log"),
            )
        )
    stale = ClusterState(
        launcher_pid=entries[0].pid,
        launcher_started=entries[0].started,
        created_at=time.time() - 3600,
        nodes=entries,
    )
    st.save(state_dir, stale)
    client = docker_client()
    stray = client.containers.create(
        "busybox:latest", ["true"], labels={CONTAINER_LABEL: entries[1].peer_id}
    )
    try:
        with running_devstack(state_dir, 2) as stack:
            yield {"stack": stack, "stale": stale, "stray": stray.id}
    finally:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(stray.id).remove(force=True)
        client.close()


@pytest.mark.timeout(420)
def test_up_cleans_stale_state(stale_then_up: dict[str, Any]) -> None:
    import docker.errors

    stack: Devstack = stale_then_up["stack"]
    stale: ClusterState = stale_then_up["stale"]
    assert stack.up_result is not None
    assert "cleaning up after a cluster that did not shut down (2 nodes)" in stack.up_result.stdout
    client = docker_client()
    try:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(stale_then_up["stray"])
    finally:
        client.close()
    assert stack.state is not None
    assert {n.pid for n in stack.state.nodes}.isdisjoint(n.pid for n in stale.nodes)
    assert len(st.live_nodes(stack.state)) == 2


@pytest.mark.timeout(300)
def test_down_leaves_no_process_or_container(stale_then_up: dict[str, Any]) -> None:
    stack: Devstack = stale_then_up["stack"]
    assert stack.state is not None
    peer_ids = {n.peer_id for n in stack.state.nodes}

    result = stack.run(
        "submit", "--wait", "--wait-timeout", str(JOB_TIMEOUT_S), "busybox", "--", "echo", "hello",
        timeout=JOB_TIMEOUT_S + 60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout == "hello\n", describe_failure(result)

    # A job whose container is still running when the cluster goes down.
    job_id = submit_cli(stack, "busybox", "--", "sleep", "300")
    wait_until(
        lambda: labelled_containers(peer_ids),
        timeout=120,
        interval=0.25,
        message=f"the container of job {job_id} to exist",
    )
    stack.down_and_check()  # runs `devstack down`, asserts no process and no container
    result = stack.run("down", check=True)
    assert "no devstack is running" in result.stdout
