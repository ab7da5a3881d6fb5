"""Whom a requester offers a shard to: the bidders' own ranking (node.bidder.offer_order),
less the nodes its offer hints (node.offers) say cannot take it now."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.bidder import HashSpaceBidder, offer_order, rendezvous_ranks
from node.models import Deal, Job, JobSpec, Resources
from node.offers import FORGET_S, MAX_REMEMBERED, OfferHints, spread_hosts

pytestmark = pytest.mark.timeout(60)

node_ids = st.lists(
    st.text("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", min_size=8, max_size=12),
    min_size=1,
    max_size=60,
    unique=True,
)


def job(job_id: str, concurrency: int = 1, **spec: object) -> Job:
    return Job(
        id=job_id,
        requester="QmRequester",
        spec=JobSpec(image="busybox", deal=Deal(concurrency=concurrency), **spec),  # type: ignore[arg-type]
        created_at=0.0,
    )


@given(members=node_ids, job_id=st.text(min_size=1, max_size=20), shard=st.integers(0, 999))
def test_the_offer_order_is_the_bidders_ranking(
    members: list[str], job_id: str, shard: int
) -> None:
    ordered = offer_order(job_id, shard, members)
    ranks = rendezvous_ranks(job_id, shard, members)
    assert sorted(ordered) == sorted(members)
    assert [ranks[members.index(node)] for node in ordered] == list(range(len(members)))


@given(
    members=node_ids,
    job_id=st.text(min_size=1, max_size=20),
    shard=st.integers(0, 99),
    concurrency=st.integers(1, 5),
)
def test_the_first_c_offered_are_the_first_band_of_the_gossip_bidder(
    members: list[str], job_id: str, shard: int, concurrency: int
) -> None:
    """Offer and gossip agree: the nodes offered first are those that would bid at
    once on the gossip path, and each later node is in the band its place says."""
    the_job = job(job_id, concurrency)
    step = 0.25
    delays = dict(zip(members, HashSpaceBidder(step).delays(the_job, shard, members), strict=True))
    for place, node in enumerate(offer_order(job_id, shard, members)):
        assert delays[node] == (place // concurrency) * step


@given(members=node_ids, job_id=st.text(min_size=1, max_size=20))
def test_every_node_sees_the_same_order_whatever_order_it_lists_members_in(
    members: list[str], job_id: str
) -> None:
    assert offer_order(job_id, 0, members) == offer_order(job_id, 0, list(reversed(members)))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_node_is_skipped_until_its_answer_is_stale() -> None:
    clock = Clock()
    hints = OfferHints(clock)
    spec = JobSpec(image="busybox")
    hints.declined("A", "full", spec)
    assert not hints.may_take("A", spec) and hints.may_take("B", spec)
    clock.now += FORGET_S["full"] + 0.01
    assert hints.may_take("A", spec)


def test_a_bid_clears_full_and_unreachable() -> None:
    hints = OfferHints(Clock())
    spec = JobSpec(image="busybox")
    hints.declined("A", "full", spec)
    hints.unreachable("B")
    hints.bid("A")
    hints.bid("B")
    assert hints.may_take("A", spec) and hints.may_take("B", spec)


def test_no_image_and_too_big_are_about_that_image_and_size_only() -> None:
    hints = OfferHints(Clock())
    busybox, other = JobSpec(image="busybox"), JobSpec(image="alpine")
    big = JobSpec(image="busybox", resources=Resources(cpu=8.0))
    hints.declined("A", "no_image", busybox)
    hints.declined("B", "too_big", big)
    assert not hints.may_take("A", busybox) and hints.may_take("A", other)
    assert not hints.may_take("B", big) and hints.may_take("B", busybox)
    hints.bid("A")  # a bid on another job says nothing about this image
    assert not hints.may_take("A", busybox)


def test_candidates_keep_the_order_and_leave_out_the_excluded_and_the_unable() -> None:
    hints = OfferHints(Clock())
    members = [f"Node{i}" for i in range(10)]
    the_job = job("job-1")
    order = offer_order(the_job.id, 0, members)
    hints.declined(order[0], "full", the_job.spec)
    got = hints.candidates(the_job.id, 0, the_job.spec, members, exclude={order[1]})
    assert got == order[2:]
    assert hints.statistics().skipped == 1


def test_what_is_remembered_is_bounded() -> None:
    clock = Clock()
    hints = OfferHints(clock)
    spec = JobSpec(image="busybox")
    for i in range(MAX_REMEMBERED + 50):
        hints.unreachable(f"Node{i}")
    assert hints.statistics().remembered <= MAX_REMEMBERED
    clock.now += FORGET_S["unreachable"] + 1
    hints.unreachable("Late")  # room again once the old answers expired
    assert not hints.may_take("Late", spec)
    assert hints.statistics().remembered == 1


# -- runs on distinct hosts --------------------------------------------------------


@given(
    hosts=st.lists(st.sampled_from(["10.0.0.2", "10.0.0.3", "10.0.0.4", None]), max_size=12),
    first=st.integers(0, 6),
)
def test_spread_hosts_puts_distinct_hosts_first_and_keeps_every_node(
    hosts: list[str | None], first: int
) -> None:
    nodes = [f"n{i}" for i in range(len(hosts))]
    host_of = dict(zip(nodes, hosts, strict=True)).get
    spread = spread_hosts(nodes, host_of, first)
    assert sorted(spread) == sorted(nodes)  # nothing lost, nothing doubled
    distinct = len({h for h in hosts if h is not None}) + hosts.count(None)
    picked = min(first, distinct)
    head = spread[:picked]
    known = [host_of(n) for n in head if host_of(n) is not None]
    assert len(known) == len(set(known))  # the first ones share no host
    # Each head node is the best-ranked of its host; the rest keep their order.
    for node in head:
        host = host_of(node)
        if host is not None:
            assert nodes.index(node) == min(i for i, h in enumerate(hosts) if h == host)
    rest = spread[picked:]
    assert rest == [n for n in nodes if n in rest]


def test_on_one_host_the_order_is_unchanged() -> None:
    nodes = ["a", "b", "c", "d"]
    assert spread_hosts(nodes, lambda _n: "127.0.0.1", 3) == nodes
