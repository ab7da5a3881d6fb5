"""``devstack locks``: merging real per-node lock and stall reports across nodes."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from devstack.locks import format_contention
from profiles.contention import merge, since
from profiles.locks import LockRegistry, TrioLock
from profiles.report import contention_report
from profiles.stalls import StallDetector

HOLD_S = 0.03


def make_shared_lock(registry: LockRegistry) -> TrioLock:
    # One creation site for every "node", as the same line of node code would be.
    return TrioLock("shared", registry=registry)


async def block_the_loop() -> None:
    time.sleep(HOLD_S)  # on purpose: a stall


def node_report(contend: bool) -> dict[str, Any]:
    """A node's ``/api/v1/stats`` locks and stalls, as it would send them."""
    registry = LockRegistry(warn_ms=1000)
    detector = StallDetector(threshold_ms=HOLD_S * 1000 / 2)

    async def main() -> None:
        lock = make_shared_lock(registry)
        TrioLock("quiet", registry=registry)
        if not contend:
            async with lock:
                pass
            return

        async def waiter() -> None:
            async with lock:
                pass

        async with trio.open_nursery() as nursery:
            async with lock:
                nursery.start_soon(waiter)
                # The hold starts once the waiter is parked: its wait covers all of it.
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(HOLD_S)
            nursery.start_soon(block_the_loop, name="blocker")

    trio.run(main, instruments=[detector])
    # Through JSON, as devstack gets it.
    return msgspec.json.decode(msgspec.json.encode(contention_report(registry, detector)))


@pytest.mark.timeout(30)
def test_same_lock_on_two_nodes_is_one_row_with_summed_counts() -> None:
    reports = [("node-0", node_report(True)), ("node-1", node_report(True))]
    found = merge(reports)

    shared = found.locks[0]
    assert (shared.name, shared.nodes, shared.contended_nodes) == ("shared", 2, 2)
    assert shared.contended == 2 and shared.acquisitions == 4
    single = [r["locks"][0]["total_wait_ns"] for _, r in reports]
    assert shared.total_wait_ns == sum(single)
    assert shared.total_wait_ns >= 2 * HOLD_S * 1e9 * 0.8
    assert shared.max_hold_ns >= HOLD_S * 1e9 * 0.8
    assert sum(shared.waiters.values()) == 2
    assert "test_devstack_locks.py" in shared.waiters.most_common(1)[0][0]

    stalls = found.stalls
    assert stalls.nodes == 2 and stalls.stalls >= 2
    assert stalls.tasks["blocker"].stalls == 2 and stalls.tasks["blocker"].nodes == 2
    assert stalls.worst_task == "blocker" and stalls.worst_node in ("node-0", "node-1")

    table = format_contention(found, top=5)
    assert "shared" in table and "2/2" in table and "blocker" in table
    assert "quiet" not in table.split("longest holds")[0]  # never contended: not a row


@pytest.mark.timeout(30)
def test_no_contention_says_so() -> None:
    found = merge([("node-0", node_report(False))])
    assert not any(m.contended for m in found.locks)
    assert "no contention (2 locks, 1 acquisitions)" in format_contention(found)


def test_a_report_without_locks_is_an_error() -> None:
    with pytest.raises(KeyError):
        merge([("node-0", {"stalls": {}})])


@pytest.mark.timeout(30)
def test_since_subtracts_counts_and_keeps_maxima() -> None:
    before = merge([("node-0", node_report(False))])
    after = merge([("node-0", node_report(True))])
    during = since(after, before)
    shared = next(m for m in during.locks if m.name == "shared")
    assert (shared.acquisitions, shared.contended) == (2 - 1, 1)
    assert shared.total_wait_ns == after.locks[0].total_wait_ns  # none waited before
    assert shared.max_hold_ns == after.locks[0].max_hold_ns
    assert during.stalls.stalls == after.stalls.stalls - before.stalls.stalls
    assert during.stalls.tasks["blocker"].stalls == 1
    nothing = since(after, after)
    assert not any(m.contended for m in nothing.locks) and nothing.stalls.stalls == 0
    assert not nothing.stalls.tasks
