"""The bidders: bands, monotonic delay in rank, the seed's arithmetic, selection by name."""

from __future__ import annotations

import statistics
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.bidder import (
    BIDDERS,
    AllBidder,
    Bacalhau2022Bidder,
    HashSpaceBidder,
    band,
    fnv1a_32,
    make_bidder,
    rendezvous_score,
    seed_delay_ms,
    wanted_bids,
)
from node.models import Deal, Job, JobSpec

pytestmark = pytest.mark.timeout(60)


def job(job_id: str = "job-1", concurrency: int = 1, min_bids: int = 0) -> Job:
    spec = JobSpec(image="busybox", command=["true"], deal=Deal(concurrency, 0, min_bids))
    return Job(id=job_id, requester="R", spec=spec, created_at=0.0)


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
    delays = [bidder.bid_delay(f"node-{i}", job(), 0, 1000) for i in range(2000)]
    assert any(d is None for d in delays)
    assert all(d is None or d in (0.0, 1.0) for d in delays)


@given(
    score=st.floats(0, 1, exclude_max=True),
    n=st.integers(1, 5000),
    c=st.integers(1, 50),
)
def test_band_is_rank_over_c(score: float, n: int, c: int) -> None:
    b = band(score, n, c)
    assert 0 <= b <= n // c
    assert b * c <= score * n < (b + 1) * c + 1e-9


@given(
    a=st.floats(0, 1, exclude_max=True),
    b=st.floats(0, 1, exclude_max=True),
    n=st.integers(1, 5000),
    c=st.integers(1, 50),
)
def test_delay_is_monotonic_in_score(a: float, b: float, n: int, c: int) -> None:
    lo, hi = sorted((a, b))
    assert band(lo, n, c) <= band(hi, n, c)


def test_score_is_deterministic_uniform_and_per_job() -> None:
    scores = [rendezvous_score(f"node-{i}", "job-1", 0) for i in range(4000)]
    assert scores == [rendezvous_score(f"node-{i}", "job-1", 0) for i in range(4000)]
    assert all(0 <= s < 1 for s in scores)
    assert abs(statistics.mean(scores) - 0.5) < 0.03
    other = [rendezvous_score(f"node-{i}", "job-2", 0) for i in range(4000)]
    assert scores != other
    assert rendezvous_score("n", "j", 0) != rendezvous_score("n", "j", 1)


@given(c=st.integers(1, 5), n=st.sampled_from([50, 200, 1000]))
def test_hash_space_band_zero_holds_about_c_nodes_and_never_drops(c: int, n: int) -> None:
    bidder = HashSpaceBidder(step=0.1)
    nodes = [f"node-{i}" for i in range(n)]
    band_zero = []
    for k in range(40):
        j = job(str(uuid.UUID(int=k)), concurrency=c)
        delays = [bidder.bid_delay(node, j, 0, n) for node in nodes]
        assert all(d is not None and d >= 0 for d in delays)
        band_zero.append(sum(d == 0 for d in delays))
    assert abs(statistics.mean(band_zero) - c) <= max(1.0, 0.5 * c)


def test_hash_space_delay_is_band_times_step() -> None:
    bidder = HashSpaceBidder(step=0.2)
    j = job(concurrency=2)
    score = rendezvous_score("node-x", j.id, 0)
    assert bidder.bid_delay("node-x", j, 0, 100) == pytest.approx(band(score, 100, 2) * 0.2)


def test_min_bids_widens_the_band() -> None:
    assert wanted_bids(job(concurrency=1, min_bids=4)) == 4
    assert wanted_bids(job(concurrency=3, min_bids=0)) == 3


def test_all_bids_at_once_and_selection_by_name() -> None:
    assert AllBidder().bid_delay("n", job(), 0, 1000) == 0.0
    assert set(BIDDERS) == {"hash-space", "bacalhau-2022", "all"}
    assert isinstance(make_bidder("hash-space", step=0.3), HashSpaceBidder)
    assert make_bidder("hash-space", step=0.3).step == 0.3
    with pytest.raises(ValueError, match="unknown bidder 'nope'; known: hash-space"):
        make_bidder("nope")
    with pytest.raises(ValueError, match="step"):
        HashSpaceBidder(step=-1)
