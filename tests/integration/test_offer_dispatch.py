"""Offer-first dispatch on real devstacks (README, dispatch): a job reaches the nodes it is
offered to and no other, a node that declines or is dead leads to the next-ranked
one, offers that all come back declined fall back to gossip, and a restarted peer's
warm stream is replaced.

No mocks: real node processes, py-libp2p warm streams, the default offer dispatch.
Which node a job is offered to first is the rendezvous ranking of its id over the
live members (``node.bidder.offer_order``), which a job id fixes; tests that need a
given node ranked first submit jobs until one ranks it so (each try has a 1 in 10
chance on 10 nodes; the bound makes a miss vanishingly unlikely) and read the
ranking back, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.state import NodeEntry
from node.bidder import offer_order
from node.requester import EXTRA_OFFERS
from tests.conftest import (
    Devstack,
    describe_job,
    docker_client,
    get_json,
    running_devstack,
    wait_job_end,
    wait_until,
)

pytestmark = pytest.mark.slow

NETWORK = 10
JOB_TIMEOUT_S = 120.0
# Each try ranks a given node first with probability 1/10: 150 misses in a row
# happen about once in 7 million runs.
MAX_TRIES = 150
FLOW = ("out.JobOffered", "in.Bid", "out.BidAccepted", "in.ResultsProposed")
FLOW += ("out.ResultsAccepted", "in.ResultsPublished")


def noop_spec(concurrency: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "engine": "noop",
        "command": ["echo", "offered"],
        "deal": {"concurrency": concurrency},
        **extra,
    }


def submit(api: str, spec: dict[str, Any]) -> str:
    response = httpx.post(f"{api}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 201, f"submit to {api}: {response.text}"
    return response.json()["id"]


def run_job(api: str, spec: dict[str, Any]) -> dict[str, Any]:
    answer = wait_job_end(api, submit(api, spec), JOB_TIMEOUT_S, interval=0.05)
    return answer


def own_events(answer: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The requester's events of ``kind`` (not those of its own compute side)."""
    return [
        e
        for e in answer["events"]
        if e["node"] == answer["requester"]
        and e["kind"] == kind
        and e["detail"].get("role") != "compute"
    ]


def runners(answer: dict[str, Any]) -> set[str]:
    return {e["detail"]["peer"] for e in own_events(answer, "bid_accepted")}


def messages_of(answer: dict[str, Any]) -> Counter[str]:
    """What the job's requester counted of the job's messages, from its last event."""
    ends = own_events(answer, answer["job"]["state"])
    assert ends, answer["events"]
    return Counter(ends[-1]["detail"]["messages"])


def story(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The requester's events in short: (kind, peer, reason)."""
    return [
        (e["kind"], e["detail"].get("peer", "")[-6:], e["detail"].get("reason", ""))
        for e in answer["events"]
        if e["node"] == answer["requester"] and e["detail"].get("role") != "compute"
    ]


def transport_messages(node: NodeEntry) -> Counter[str]:
    return Counter(get_json(f"{node.api}/api/v1/node")["transport"]["messages"])


def streams_of(node: NodeEntry) -> dict[str, int]:
    return get_json(f"{node.api}/api/v1/node")["transport"]["streams"]


def ranked_first(
    requester: NodeEntry,
    members: list[str],
    wanted: str,
    spec: dict[str, Any],
    check: Callable[[dict[str, Any], list[str]], None] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Submit ``spec`` to ``requester`` until a job ranks ``wanted`` first among
    ``members``; that job's description and ranking. Every job must complete;
    ``check`` sees each one that does not rank ``wanted`` first."""
    for _ in range(MAX_TRIES):
        answer = run_job(requester.api, spec)
        assert answer["job"]["state"] == "completed", answer["job"]
        order = offer_order(answer["job"]["job"]["id"], 0, members)
        if order[0] == wanted:
            return answer, order
        if check is not None:
            check(answer, order)
    raise AssertionError(f"no job of {MAX_TRIES} ranked {wanted} first")


@pytest.fixture(scope="module")
def offers10(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """10 nodes, offer dispatch (the default); noop jobs."""
    with running_devstack(tmp_path_factory.mktemp("offers10"), NETWORK) as stack:
        yield stack


def live_members(stack: Devstack) -> list[str]:
    """Every node's peer id, once every node sees all of them (the requester ranks
    the live members it knows)."""
    stack.wait_whole()
    assert stack.state is not None
    return [n.peer_id for n in stack.state.nodes]


# -- 1. what a job costs ---------------------------------------------------------


@pytest.mark.timeout(600)  # includes bringing 10 nodes up on a loaded machine
@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_job_reaches_only_its_offered_nodes_with_no_gossip(
    offers10: Devstack, concurrency: int
) -> None:
    """A c=1 job costs 6 messages and a c=3 job 18, all direct; no node gossips, and
    no node but the requester and the ones that ran the job sees a message of it."""
    assert offers10.state is not None
    nodes = offers10.state.nodes
    live_members(offers10)
    requester = nodes[concurrency]
    before = {n.peer_id: transport_messages(n) for n in nodes}

    answer = run_job(requester.api, noop_spec(concurrency))

    assert answer["job"]["state"] == "completed", answer["job"]
    counted = messages_of(answer)
    print(f"\nc={concurrency}: the job's messages {dict(counted)}")
    for kind in ("out.BidAccepted", "in.ResultsProposed", "out.ResultsAccepted"):
        assert counted[kind] == concurrency, (kind, counted)
    assert counted["in.ResultsPublished"] == concurrency, counted
    # Each offer is answered in its ack, by a bid or a decline.
    assert counted["out.JobOffered"] == counted["in.Bid"] + counted["in.OfferDeclined"]
    assert concurrency <= counted["out.JobOffered"] <= concurrency + EXTRA_OFFERS
    assert not [k for k in counted if k.startswith("gossip.")], counted
    kinds = {e["kind"] for e in answer["events"] if e["node"] == answer["requester"]}
    assert not kinds & {"announced", "rebid", "gossip_fallback"}, kinds
    if counted["out.JobOffered"] > concurrency:
        # An answer slower than the offer patience (a loaded machine) brought an offer
        # to the next node too; that bid is rejected, perhaps after the job's last event,
        # so the exact counts below cannot be known. It is rare; say so and stop here.
        print(f"c={concurrency}: an answer was slow, {counted['out.JobOffered']} offers")
        return
    assert counted == Counter(dict.fromkeys(FLOW, concurrency)), counted

    # Only the requester and the nodes it offered the job to saw any of its messages.
    involved = {answer["requester"]} | runners(answer)
    sent: Counter[str] = Counter()
    for node in nodes:
        delta = transport_messages(node) - before[node.peer_id]
        assert not [k for k in delta if k.startswith("gossip.")], (node.name, delta)
        if node.peer_id not in involved:
            assert not delta, f"{node.name} took part in no job but saw {dict(delta)}"
        sent.update({k.removeprefix("direct.out."): v for k, v in delta.items() if ".out." in k})
    # The nodes' own counters agree with the requester's count of the job.
    assert sent == Counter({k.split(".", 1)[1]: v for k, v in counted.items()}), (sent, counted)


# -- 2. a restarted peer ---------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_restarted_peer_gets_the_next_message_on_a_new_stream(offers10: Devstack) -> None:
    """The requester keeps a warm stream to a node it offered a job to; the node
    restarts (its connection dies with it); the next offer to it goes out on a new
    stream and the job runs there."""
    assert offers10.state is not None
    members = live_members(offers10)
    requester, target = offers10.state.nodes[0], offers10.state.nodes[5]
    ranked_first(requester, members, target.peer_id, noop_spec())
    warm = streams_of(requester)

    offers10.restart(target)
    answer, _ = ranked_first(requester, members, target.peer_id, noop_spec())

    assert runners(answer) == {target.peer_id}, answer["events"]
    after = streams_of(requester)
    print(f"\nrequester streams before the restart {warm}, after {after}")
    assert after["opened"] > warm["opened"], (warm, after)
    assert after["failed"] == warm["failed"], (warm, after)


# -- 3. declines and the dead ----------------------------------------------------


@pytest.mark.timeout(300)
def test_offers_all_declined_fall_back_to_gossip_and_the_job_completes(
    offers10: Devstack,
) -> None:
    """A job in an image no node has: every offer comes back declined (no_image), up
    to c + EXTRA_OFFERS of them, the job is gossiped, and its requester says why it
    waits; once the image exists, a later round of bidding finds bidders and the job
    completes."""
    assert offers10.state is not None
    live_members(offers10)
    requester = offers10.state.nodes[6]
    image = f"pyb-fallback-{uuid.uuid4().hex[:10]}:latest"
    client = docker_client()
    try:
        job_id = submit(requester.api, {"image": image, "command": ["echo", "late"]})

        def fell_back() -> dict[str, Any] | None:
            answer = describe_job(requester.api, job_id)
            return answer if own_events(answer, "gossip_fallback") else None

        answer = wait_until(fell_back, 60, 0.1, f"job {job_id} to be gossiped")
        declined = own_events(answer, "offer_declined")
        assert len(declined) == min(NETWORK, 1 + EXTRA_OFFERS), story(answer)
        assert all(e["detail"]["reason"].startswith("no_image") for e in declined), declined
        # Its requester says why it waits: no node has the image, and whom it asked.
        [waiting] = answer["waiting"]
        asked = len(declined)
        assert waiting["why"].startswith(f"no node has image {image} (asked {asked})"), waiting
        assert waiting["answers"]["no_image"] == waiting["offered"] == asked, waiting
        assert client.images.get("busybox:latest").tag(image.split(":")[0], "latest")

        answer = wait_job_end(requester.api, job_id, JOB_TIMEOUT_S)
        assert answer["job"]["state"] == "completed", story(answer)
        fallback = own_events(answer, "gossip_fallback")[0]["at"]
        assert all(e["at"] > fallback for e in own_events(answer, "bid_accepted"))
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(image)  # the tag only: busybox stays
        client.close()


@pytest.mark.timeout(600)
def test_a_declining_node_leads_to_the_next_ranked(offers10: Devstack) -> None:
    """A node offering half a core declines a job asking for a whole one (too big);
    the next-ranked node runs it. The requester then remembers, and the next such
    job ranked first to that node goes straight to the next one. The node gets its
    whole core back at the end."""
    assert offers10.state is not None
    small = offers10.restart(offers10.state.nodes[7], "--cpu", "0.5")
    try:
        assert get_json(f"{small.api}/api/v1/node")["capacity"]["cpu"] == 0.5
        members = live_members(offers10)
        requester = offers10.state.nodes[2]
        spec = noop_spec(resources={"cpu": 1.0})

        answer, order = ranked_first(requester, members, small.peer_id, spec)
        declined = own_events(answer, "offer_declined")
        assert [e["detail"]["peer"] for e in declined] == [small.peer_id], answer["events"]
        assert declined[0]["detail"]["reason"].startswith("too_big"), declined
        assert runners(answer) == {order[1]}, (order[:3], answer["events"])

        answer, order = ranked_first(requester, members, small.peer_id, spec)
        assert not own_events(answer, "offer_declined"), answer["events"]
        assert runners(answer) == {order[1]}
        hints = get_json(f"{requester.api}/api/v1/node")["requester"]["hints"]
        assert hints["skipped"] >= 1, hints
    finally:
        offers10.restart(small)  # its own options again: a whole core


@pytest.mark.timeout(600)
def test_a_dead_node_leads_to_the_next_ranked(offers10: Devstack) -> None:
    """A node killed with SIGKILL stays a live member for a while (membership forgets
    it only after its TTL); an offer to it cannot be delivered, and the next-ranked
    node runs the job. The node is started again at the end."""
    assert offers10.state is not None
    members = live_members(offers10)
    victim, requester = offers10.state.nodes[9], offers10.state.nodes[4]
    offers10.kill(victim)
    try:
        answer, order = ranked_first(requester, members, victim.peer_id, noop_spec())

        undelivered = own_events(answer, "offer_undelivered")
        assert [e["detail"]["peer"] for e in undelivered] == [victim.peer_id], story(answer)
        assert runners(answer) == {order[1]}, (order[:3], answer["events"])
    finally:
        offers10.restart(victim)


# -- 4. every offer declined -----------------------------------------------------


@pytest.fixture(scope="module")
def full3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """3 nodes of one slot each, offer dispatch."""
    docker_client().close()
    state_dir = tmp_path_factory.mktemp("offers3")
    stack = Devstack(state_dir=state_dir, nodes=3, up_args=("--slots", "1"))
    with running_devstack(state_dir, 3, stack) as running:
        yield running


@pytest.mark.timeout(420)
def test_a_full_cluster_queues_the_job_until_a_slot_frees(full3: Devstack) -> None:
    """With every slot taken by a 6 s container, a job's offers all come back
    declined (full) or are skipped for it; it queues (no gossip), the first node to
    free a slot says so (``SlotFreed``), and the job runs there."""
    assert full3.state is not None
    nodes = full3.state.nodes
    sleeper = {"image": "busybox:latest", "command": ["sleep", "6"]}
    busy = [submit(nodes[i].api, sleeper) for i in range(3)]

    def all_running() -> bool:
        return all(get_json(f"{n.api}/api/v1/node")["capacity"]["reserved"] == 1 for n in nodes)

    wait_until(all_running, timeout=60, message="every slot taken", ignore=(httpx.HTTPError,))
    freed_before = transport_messages(nodes[0])["direct.in.SlotFreed"]
    answer = run_job(nodes[0].api, noop_spec())

    assert answer["job"]["state"] == "completed", answer["job"]
    kinds = [e["kind"] for e in answer["events"] if e["node"] == answer["requester"]]
    assert "queued" in kinds and "gossip_fallback" not in kinds, kinds
    for declined in own_events(answer, "offer_declined"):
        assert declined["detail"]["reason"] == "full: all 1 slot(s) busy", declined
    queued = own_events(answer, "queued")[0]["at"]
    accepted = own_events(answer, "bid_accepted")
    assert accepted and all(e["at"] > queued for e in accepted), answer["events"]
    assert transport_messages(nodes[0])["direct.in.SlotFreed"] > freed_before
    for job_id, node in zip(busy, nodes, strict=True):
        assert wait_job_end(node.api, job_id, JOB_TIMEOUT_S)["job"]["state"] == "completed"
    print(f"\nall full: {kinds}")


# -- 5. no job short of bids while nodes have room, either way -------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("dispatch", ["offer", "gossip"])
def test_no_job_ends_short_of_bids_while_nodes_have_room(
    tmp_path_factory: pytest.TempPathFactory, dispatch: str
) -> None:
    """90 noop jobs of concurrency 3 at 1.5 jobs/s on 20 nodes (the load that left two
    jobs of 150 short of bids with gossip alone, 17 idle nodes able to run them): every
    job completes, on either path."""
    from devstack.bench.burst import run_burst

    state_dir = tmp_path_factory.mktemp(f"room20-{dispatch}")
    stack = Devstack(state_dir=state_dir, nodes=20, up_args=("--dispatch", dispatch))
    with running_devstack(state_dir, 20, stack) as running:
        assert running.state is not None
        burst = run_burst(running.state, 90, noop_spec(3), 1.5)
    figures = burst.figures(90, 1.5)
    print(
        f"\n{dispatch}: {figures['completed']} completed, p99 {figures['latency_p99_ms']} ms,"
        f" {figures['messages_per_job']} messages per job; failures {figures['failures']}"
    )
    assert not burst.refused, burst.refused
    assert figures["completed"] == 90, figures["failures"]
