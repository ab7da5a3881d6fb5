"""The bidders: bands by exact rank, monotonic delay in rank, the seed's arithmetic,
selection by name."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import node.bidder as bidder_module
from node.bidder import (
    BIDDERS,
    DEFAULT_STEP_S,
    AllBidder,
    Bacalhau2022Bidder,
    HashSpaceBidder,
    band,
    fnv1a_32,
    make_bidder,
    rendezvous_ranks,
    rendezvous_score,
    seed_delay_ms,
)
from node.models import Deal, Job, JobSpec

pytestmark = pytest.mark.timeout(60)


def job(job_id: str = "job-1", concurrency: int = 1, min_bids: int = 0) -> Job:
    spec = JobSpec(image="busybox", command=["true"], deal=Deal(concurrency, 0, min_bids))
    return Job(id=job_id, requester="R", spec=spec, created_at=0.0)


# Node ids of any shape (peer ids in practice), no repeats.
members_st = st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=60, unique=True)
jobs_st = st.builds(
    job,
    job_id=st.text(max_size=16),
    concurrency=st.integers(1, 8),
    min_bids=st.integers(0, 8),
)
steps_st = st.sampled_from([0.0, 0.1, DEFAULT_STEP_S, 0.25, 1.0])


def _key(node_id: str, job_id: str, shard: int = 0) -> tuple[float, str]:
    return rendezvous_score(node_id, job_id, shard), node_id


# -- the seed's rule (bacalhau-2022) ---------------------------------------------------


def test_fnv1a_32_known_values() -> None:
    # Published FNV-1a 32-bit test vectors.
    assert fnv1a_32("") == 0x811C9DC5
    assert fnv1a_32("a") == 0xE40C292C
    assert fnv1a_32("foobar") == 0xBF9CF968


def test_seed_rule_on_hand_computed_cases() -> None:
    # c == N: one chunk spans the whole space (float32(1) * 4294967295 rounds to
    # 2**32), so every distance is in chunk 0: bid at once.
    assert seed_delay_ms(3, "n", "j", 3) == (0, True)
    # N=2, c=1: chunk = int(float32(0.5) * float32(4294967295)) = 2**31.
    a, b = fnv1a_32("node-a"), fnv1a_32("job-x")
    expected = abs(a - b) // (1 << 31) * 1000
    assert seed_delay_ms(2, "node-a", "job-x", 1) == (expected, expected <= 1000)
    # N=1000, c=1: chunk = int(float32(0.001) * float32(2**32 - 1)) = 4294967 (float32).
    distance = abs(fnv1a_32("QmNode") - fnv1a_32("job-1"))
    assert seed_delay_ms(1000, "QmNode", "job-1", 1) == (distance // 4294967 * 1000, False)


def test_seed_rule_drops_beyond_one_chunk() -> None:
    bidder = Bacalhau2022Bidder()
    members = [f"node-{i}" for i in range(2000)]
    delays = bidder.delays(job(), 0, members)
    assert len(delays) == 2000
    assert any(d is None for d in delays)
    assert any(d is not None for d in delays)
    assert all(d is None or d in (0.0, 1.0) for d in delays)
    assert delays == [bidder.delay_of(node, job(), 0, 2000) for node in members]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 50])
def test_seed_rule_takes_the_network_size_from_the_members(n: int) -> None:
    bidder = Bacalhau2022Bidder()
    members = [f"node-{i}" for i in range(n)]
    for k in range(20):
        j = job(f"job-{k}", concurrency=1)
        expected = []
        for node in members:
            delay_ms, bids = seed_delay_ms(n, node, j.id, 1)
            expected.append(delay_ms / 1000 if bids else None)
        assert bidder.delays(j, 0, members) == expected
        assert bidder.bid_delay(members[0], j, 0, members) == expected[0]


# -- bands and ranks -------------------------------------------------------------------


@given(rank=st.integers(0, 100_000), c=st.integers(1, 50))
def test_band_is_rank_over_c(rank: int, c: int) -> None:
    assert band(rank, c) == rank // c


@given(a=st.integers(0, 100_000), b=st.integers(0, 100_000), c=st.integers(1, 50))
def test_band_is_monotonic_in_rank(a: int, b: int, c: int) -> None:
    lo, hi = sorted((a, b))
    assert band(lo, c) <= band(hi, c)


@given(members=members_st, job_id=st.text(max_size=16), shard=st.integers(0, 3))
def test_ranks_are_a_permutation_sorted_by_score(
    members: list[str], job_id: str, shard: int
) -> None:
    ranks = rendezvous_ranks(job_id, shard, members)
    assert sorted(ranks) == list(range(len(members)))
    # Listed by rank, the (score, id) keys strictly increase: rank 0 = lowest score.
    by_rank = sorted(range(len(members)), key=ranks.__getitem__)
    keys = [_key(members[i], job_id, shard) for i in by_rank]
    assert all(x < y for x, y in pairwise(keys))


def test_equal_scores_rank_by_node_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bidder_module, "rendezvous_score", lambda node_id, job_id, shard: 0.5)
    assert rendezvous_ranks("job-1", 0, ["c", "a", "b"]) == [2, 0, 1]
    delays = HashSpaceBidder(step=1.0).delays(job(), 0, ["c", "a", "b"])
    assert delays == [2.0, 0.0, 1.0]


def test_score_is_deterministic_uniform_and_per_job() -> None:
    scores = [rendezvous_score(f"node-{i}", "job-1", 0) for i in range(4000)]
    assert scores == [rendezvous_score(f"node-{i}", "job-1", 0) for i in range(4000)]
    assert all(0 <= s < 1 for s in scores)
    assert abs(statistics.mean(scores) - 0.5) < 0.03
    other = [rendezvous_score(f"node-{i}", "job-2", 0) for i in range(4000)]
    assert scores != other
    assert rendezvous_score("n", "j", 0) != rendezvous_score("n", "j", 1)


# -- hash-space ------------------------------------------------------------------------


@given(members=members_st, j=jobs_st, step=steps_st)
def test_hash_space_bands_hold_exactly_c_nodes(members: list[str], j: Job, step: float) -> None:
    n = len(members)
    c = max(j.spec.deal.concurrency, j.spec.deal.min_bids)
    delays = HashSpaceBidder(step=step).delays(j, 0, members)
    assert len(delays) == n
    assert all(d is not None and d >= 0 for d in delays)
    # c at once (all of them if the network is smaller), the next c one step later...
    assert sorted(delays) == pytest.approx([(k // c) * step for k in range(n)])
    if step > 0:
        assert delays.count(0.0) == min(c, n)


@given(members=members_st, j=jobs_st, step=steps_st)
def test_hash_space_delay_is_monotonic_in_rank(members: list[str], j: Job, step: float) -> None:
    delays = HashSpaceBidder(step=step).delays(j, 0, members)
    ranks = rendezvous_ranks(j.id, 0, members)
    by_rank = [delays[i] for i in sorted(range(len(members)), key=ranks.__getitem__)]
    floats = [d for d in by_rank if d is not None]
    assert len(floats) == len(members)
    assert all(x <= y for x, y in pairwise(floats))


@given(members=members_st, j=jobs_st, step=steps_st, data=st.data())
def test_own_delay_is_its_entry_whatever_the_order(
    members: list[str], j: Job, step: float, data: st.DataObject
) -> None:
    bidder = HashSpaceBidder(step=step)
    delays = bidder.delays(j, 0, members)
    for i, node in enumerate(members):
        assert bidder.bid_delay(node, j, 0, members) == delays[i]
    shuffled = data.draw(st.permutations(members))
    again = bidder.delays(j, 0, shuffled)
    assert [again[shuffled.index(m)] for m in members] == delays


@given(members=members_st, newcomer=st.text(min_size=1, max_size=10), j=jobs_st)
@settings(max_examples=200)
def test_a_view_missing_one_node_costs_at_most_one_band(
    members: list[str], newcomer: str, j: Job
) -> None:
    if newcomer in members:
        members = [m for m in members if m != newcomer]
        if not members:
            return
    step = 0.25
    bidder = HashSpaceBidder(step=step)
    without = bidder.delays(j, 0, members)
    with_it = bidder.delays(j, 0, [*members, newcomer])
    # A node that does not list itself is counted among the members anyway.
    assert bidder.bid_delay(newcomer, j, 0, members) == with_it[-1]
    newcomer_key = _key(newcomer, j.id)
    for i, node in enumerate(members):
        before, after = without[i], with_it[i]
        assert before is not None and after is not None
        if newcomer_key < _key(node, j.id):  # it ranks above the node: up to one band later
            assert after in (pytest.approx(before), pytest.approx(before + step))
        else:
            assert after == before


def test_adding_a_node_above_a_band_edge_pushes_it_one_band() -> None:
    # Not only "at most": the node at the last rank of band 0 moves to band 1.
    bidder = HashSpaceBidder(step=0.2)
    j = job(concurrency=2)
    members = sorted((f"node-{i}" for i in range(10)), key=lambda m: _key(m, j.id))
    edge = members[1]  # rank 1: the last of band 0 at c = 2
    assert bidder.bid_delay(edge, j, 0, members) == 0.0
    candidates = (f"new-{k}" for k in range(1000))
    newcomer = next(x for x in candidates if _key(x, j.id) < _key(edge, j.id))
    assert bidder.bid_delay(edge, j, 0, [*members, newcomer]) == pytest.approx(0.2)


def test_hash_space_delay_is_band_times_step() -> None:
    bidder = HashSpaceBidder(step=0.2)
    j = job(concurrency=2)
    members = [f"node-{i}" for i in range(100)]
    ordered = sorted(members, key=lambda m: _key(m, j.id))
    for rank, node in enumerate(ordered):
        assert bidder.bid_delay(node, j, 0, members) == pytest.approx((rank // 2) * 0.2)
    # A node alone bids at once; so does one given no other member.
    assert bidder.bid_delay("solo", j, 0, ["solo"]) == 0.0
    assert bidder.bid_delay("solo", j, 0, []) == 0.0
    # A node's live band step replaces the configured one; the ranks stay.
    live = bidder.delays(j, 0, members, step=0.5)
    assert live == pytest.approx([d * 2.5 for d in bidder.delays(j, 0, members)])  # type: ignore[operator]
    assert bidder.bid_delay(ordered[2], j, 0, members, step=0.5) == pytest.approx(0.5)


def test_hash_space_spreads_band_zero_over_the_nodes() -> None:
    # Each job ranks the nodes afresh: band 0 is not the same few nodes every time.
    bidder = HashSpaceBidder()
    members = [f"node-{i}" for i in range(50)]
    first = Counter()
    for k in range(500):
        delays = bidder.delays(job(str(uuid.UUID(int=k))), 0, members)
        (winner,) = (m for m, d in zip(members, delays, strict=True) if d == 0.0)
        first[winner] += 1
    assert len(first) == 50
    assert max(first.values()) < 30  # 10 expected per node


@pytest.mark.parametrize("name", sorted(BIDDERS))
def test_empty_or_repeated_members_are_rejected(name: str) -> None:
    bidder = make_bidder(name)
    with pytest.raises(ValueError, match="at least"):
        bidder.delays(job(), 0, [])
    with pytest.raises(ValueError, match="repeat"):
        bidder.delays(job(), 0, ["a", "b", "a"])
    with pytest.raises(ValueError, match="repeat"):
        bidder.bid_delay("a", job(), 0, ["a", "a"])
    if name == "hash-space":
        with pytest.raises(ValueError, match="repeat"):
            rendezvous_ranks("job-1", 0, ["a", "a"])
        with pytest.raises(ValueError, match="at least"):
            rendezvous_ranks("job-1", 0, [])


# -- the rest --------------------------------------------------------------------------


def test_min_bids_widens_the_band() -> None:
    assert Deal(concurrency=1, min_bids=4).wanted_bids == 4
    assert Deal(concurrency=3, min_bids=0).wanted_bids == 3
    assert Deal(concurrency=0).wanted_bids == 1
    members = [f"node-{i}" for i in range(20)]
    delays = HashSpaceBidder().delays(job(concurrency=1, min_bids=4), 0, members)
    assert delays.count(0.0) == 4


def test_all_bids_at_once_and_selection_by_name() -> None:
    members = [f"node-{i}" for i in range(1000)]
    assert AllBidder().delays(job(), 0, members) == [0.0] * 1000
    assert AllBidder().bid_delay("n", job(), 0, members) == 0.0
    assert set(BIDDERS) == {"hash-space", "bacalhau-2022", "all"}
    assert isinstance(make_bidder("hash-space", step=0.3), HashSpaceBidder)
    assert make_bidder("hash-space", step=0.3).step == 0.3
    assert make_bidder("hash-space").step == DEFAULT_STEP_S == 0.2
    with pytest.raises(ValueError, match="unknown bidder 'nope'; known: hash-space"):
        make_bidder("nope")
    with pytest.raises(ValueError, match="step"):
        HashSpaceBidder(step=-1)
