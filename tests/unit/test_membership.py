"""Membership by anti-entropy: merge rules, decay, and convergence of a simulated network."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.p2p.membership import (
    MemberEntry,
    Membership,
    decode_exchange,
    encode_exchange,
)

pytestmark = pytest.mark.timeout(60)

PEERS = [f"12D3KooW{'A' * 30}{i:03d}".replace("0", "x") for i in range(200)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_newer_heartbeat_wins_and_older_is_ignored() -> None:
    clock = Clock()
    m = Membership(PEERS[0], clock=clock)
    assert m.merge([MemberEntry(PEERS[1], 5, 3, "http://a")]) == 1
    assert m.merge([MemberEntry(PEERS[1], 5, 2, "http://old")]) == 0
    assert m.live_peers() == {PEERS[1]: "http://a"}
    # A restarted peer has a later generation: its counter restarts yet wins.
    m.merge([MemberEntry(PEERS[1], 6, 0, "http://b")])
    assert m.live_peers() == {PEERS[1]: "http://b"}
    assert m.size == 2


def test_own_entry_is_never_taken_from_others() -> None:
    m = Membership(PEERS[0])
    m.merge([MemberEntry(PEERS[0], 10**15, 99)])
    assert m.size == 1
    assert m.table()[0].peer == PEERS[0]


def test_a_silent_peer_is_forgotten_after_ttl() -> None:
    clock = Clock()
    m = Membership(PEERS[0], ttl=60, clock=clock)
    m.merge([MemberEntry(PEERS[1], 1, 1), MemberEntry(PEERS[2], 1, 1)])
    clock.now += 40
    m.merge([MemberEntry(PEERS[1], 1, 2)])  # only peer 1 is still beating
    clock.now += 30
    assert set(m.live_peers()) == {PEERS[1]}
    assert m.size == 2


def test_a_forgotten_peer_is_not_brought_back_by_its_old_heartbeat() -> None:
    """A neighbour that still holds a forgotten peer's last heartbeat cannot revive
    it; the peer's own next beat can, and the tombstone itself goes after 2 ttl."""
    clock = Clock()
    m = Membership(PEERS[0], ttl=60, clock=clock)
    m.merge([MemberEntry(PEERS[1], 1, 7)])
    clock.now += 61
    assert m.size == 1
    assert m.merge([MemberEntry(PEERS[1], 1, 7), MemberEntry(PEERS[1], 1, 6)]) == 0
    assert m.size == 1
    assert m.merge([MemberEntry(PEERS[1], 1, 8)]) == 1  # it beat again: alive
    assert m.size == 2
    clock.now += 61
    assert m.size == 1
    clock.now += 121  # the tombstone is gone: the old heartbeat is news again
    assert m.merge([MemberEntry(PEERS[1], 1, 8)]) == 1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_network_cut_in_two_forgets_the_other_side_for_good(seed: int) -> None:
    """Two halves that can no longer talk: each forgets the other half once its
    heartbeats stop, and exchanges within a half never bring it back."""
    rng = random.Random(seed)
    clock = Clock()
    nodes = [Membership(p, ttl=60, clock=clock) for p in PEERS[:8]]
    for _ in range(30):  # one connected network first
        for node in nodes:
            node.tick()
            other = rng.choice([n for n in nodes if n is not node])
            node.merge(other.table())
            other.merge(node.table())
        clock.now += 1
    assert all(n.size == 8 for n in nodes)
    halves = [nodes[:5], nodes[5:]]
    for _ in range(200):  # 200 s of rounds, each half on its own
        for half in halves:
            for node in half:
                node.tick()
                other = rng.choice([n for n in half if n is not node])
                node.merge(other.table())
                other.merge(node.table())
        clock.now += rng.uniform(0.5, 2.0)
    assert [n.size for n in nodes] == [5] * 5 + [3] * 3


def test_rounds_are_fast_while_discovering_then_relaxed() -> None:
    clock = Clock()
    m = Membership(PEERS[0], period=5, fast_period=0.5, clock=clock)
    m.merge([MemberEntry(PEERS[1], 1, 1)])
    assert m.next_delay() == 0.5
    clock.now += 11
    assert m.next_delay() == 5


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 120), seed=st.integers(0, 2**32 - 1))
def test_push_pull_converges_in_logarithmic_rounds(n: int, seed: int) -> None:
    """Every node learns every other within a few dozen rounds on a sparse random graph."""
    rng = random.Random(seed)
    clock = Clock()
    nodes = [Membership(p, clock=clock) for p in PEERS[:n]]
    # Each node dials the bootstrap and up to 4 random others, as devstack does.
    links: dict[int, set[int]] = {i: set() for i in range(n)}
    for i in range(1, n):
        for j in {0, *rng.sample(range(n), min(4, n))} - {i}:
            links[i].add(j)
            links[j].add(i)
    for _round in range(40):
        for i in rng.sample(range(n), n):
            if not links[i]:
                continue
            j = rng.choice(sorted(links[i]))
            nodes[i].tick()
            nodes[j].merge(nodes[i].table())
            nodes[i].merge(nodes[j].table())
        clock.now += 0.5
        if all(m.size == n for m in nodes):
            break
    assert [m.size for m in nodes] == [n] * n


def test_table_round_trips_and_bad_tables_are_refused() -> None:
    m = Membership(PEERS[0], "http://127.0.0.1:1")
    m.merge([MemberEntry(PEERS[1], 1, 1)])
    assert decode_exchange(encode_exchange(m.table())) == m.table()
    with pytest.raises(ValueError, match="bad membership table"):
        decode_exchange(b"\x00garbage")
    with pytest.raises(ValueError, match="bad peer id"):
        decode_exchange(encode_exchange([MemberEntry("not a peer id!", 1, 1)]))


@given(st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_exchange(data)
