"""The TUI's data layer and cell formatting: pure functions and ClusterSource over a
mock transport that serves documents captured from a real 3-node devstack
(``tests/unit/data/tui/cluster3.json``: two rounds of ``GET /api/v1/stats`` 1.5 s
apart, ``GET /api/v1/node`` and ``GET /api/v1/jobs?role=requester`` of each node)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as hst

from devstack import state as ds
from tests.unit.tui_fake import CLUSTER, FakeCluster, target
from tui.format import (
    BARS,
    MISSING,
    fmt_age,
    fmt_bytes,
    fmt_bytes_long,
    fmt_ms,
    fmt_percent,
    fmt_rate,
    short_id,
    short_job_id,
    sparkline,
)
from tui.source import (
    ClusterSource,
    ClusterSummary,
    JobRecord,
    JobRow,
    NodeRow,
    NodeStatus,
    StatsDocument,
    _NodeState,
    absent_row,
    matches,
    merge_jobs,
    node_row,
    role_of,
    sort_records,
)

pytestmark = pytest.mark.timeout(60)


def _doc(stats: dict[str, Any]) -> StatsDocument:
    return msgspec.json.decode(json.dumps(stats), type=StatsDocument)


def _record(record: dict[str, Any]) -> JobRecord:
    return msgspec.json.decode(json.dumps(record), type=JobRecord)


def _state() -> _NodeState:
    return _NodeState(cpu=deque(maxlen=60), latency=deque(maxlen=60))


# -- sparklines and formatting ------------------------------------------------------


def test_sparkline_scales_between_lo_and_hi() -> None:
    assert sparkline([0, 50, 100], 3, lo=0, hi=100) == "▁▅█"
    assert sparkline([0, 100], 2) == "▁█"  # hi from the values
    assert sparkline([5, 5, 5], 3, lo=None, hi=None) == "▁▁▁"  # flat: no span
    assert sparkline([150, -3], 2, lo=0, hi=100) == "█▁"  # clamped


def test_sparkline_pads_and_shows_gaps() -> None:
    assert sparkline([], 4) == "    "
    assert sparkline([None, None], 3) == "   "
    assert sparkline([10, None, 10], 3, lo=0, hi=10) == "█ █"
    assert sparkline([1.0, 2.0], 5, lo=0, hi=2) == "   ▅█"
    assert sparkline([float("nan"), 1.0], 2, lo=0, hi=1) == " █"
    assert sparkline([1, 2, 3, 4], 2, lo=0, hi=4) == "▇█"  # the last values only
    assert sparkline([1, 2], 0) == ""


@given(
    values=hst.lists(
        hst.one_of(hst.none(), hst.floats(min_value=-1e6, max_value=1e6)), max_size=40
    ),
    width=hst.integers(min_value=1, max_value=20),
    hi=hst.one_of(hst.none(), hst.floats(min_value=1, max_value=1e6)),
)
def test_sparkline_is_always_width_bars_or_spaces(
    values: list[float | None], width: int, hi: float | None
) -> None:
    line = sparkline(values, width, lo=0.0, hi=hi)
    assert len(line) == width
    assert set(line) <= set(BARS) | {" "}
    shown = values[-width:]
    offset = width - len(shown)
    for i, v in enumerate(shown):
        assert (line[offset + i] == " ") == (v is None)


@given(
    values=hst.lists(hst.floats(min_value=0, max_value=1000), min_size=2, max_size=20),
)
def test_sparkline_bars_grow_with_values(values: list[float]) -> None:
    line = sparkline(values, len(values), lo=0.0, hi=1000.0)
    pairs = list(zip(values, line, strict=True))
    for (a, bar_a), (b, bar_b) in itertools.pairwise(pairs):
        if a <= b:
            assert BARS.index(bar_a) <= BARS.index(bar_b)


def test_formatters_show_missing_for_none() -> None:
    for fmt in (fmt_ms, fmt_bytes, fmt_bytes_long, fmt_percent, fmt_rate, fmt_age):
        assert fmt(None) == MISSING


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.42, "0.4ms"),
        (41.2, "41ms"),
        (999.4, "999ms"),
        (1250, "1.25s"),
        (12345, "12.3s"),
        (185_000, "3m05s"),
        (7_500_000, "2h05m"),
        (-1, MISSING),
        (float("nan"), MISSING),
    ],
)
def test_fmt_ms(ms: float, text: str) -> None:
    assert fmt_ms(ms) == text


def test_other_formatters() -> None:
    assert fmt_bytes(87990272) == "83.9M"
    assert fmt_bytes(512) == "512B"
    assert fmt_bytes(3 * 1024**3) == "3.0G"
    assert fmt_bytes(102 * 1024**2) == "102M"
    assert fmt_bytes(87 * 1024**2) == "87.0M"
    assert fmt_bytes_long(264957952) == "253 MiB"
    assert fmt_bytes_long(1.1 * 1024**3) == "1.1 GiB"
    assert fmt_percent(3.14) == "3.1"
    assert fmt_percent(187.4) == "187"
    assert [fmt_rate(r) for r in (0, 0.5, 31.2, 1234)] == ["0", "0.5", "31", "1.2k"]
    assert [fmt_age(s) for s in (5, 600, 10800, -2)] == ["5s", "10m", "3.0h", "0s"]
    assert short_id("12D3KooWKVNrBZUPfvBbr7ybqpdFovMJKVVFDeAUUdhUUsXDhhdJ", 4) == "hhdJ"
    assert short_job_id("47db7acc-1a2f-4cb3-89e9-ffe5c0f233d7") == "47db7acc"


# -- rows from real documents --------------------------------------------------------


def test_node_row_from_captured_stats() -> None:
    node = CLUSTER["nodes"][0]
    first, second = node["stats"]
    state = _state()
    state.slots = node["info"]["capacity"]["slots"]
    row0 = node_row(target(node), _doc(first), state)
    assert row0.status is NodeStatus.UP
    assert row0.cpu_percent == first["process"]["cpu_percent"]
    assert row0.rss_bytes == first["process"]["rss_bytes"]
    assert row0.peers == first["gossip"]["peers"] == 2
    assert row0.bids_sent == first["bids"]["sent"]
    assert (row0.open_jobs, row0.completed, row0.failed) == (0, 2, 0)
    assert row0.role == "R+C"  # requested jobs, has slots
    assert row0.lock_waits_per_s is None and row0.stalls_per_s is None  # one reading
    assert row0.worst_wait_ms == max(lock["max_wait_ns"] for lock in first["locks"]) / 1e6
    assert row0.lock_warn_ms == 10.0
    assert row0.stalls == first["stalls"]["stalls"]
    assert row0.latency_p50_ms == pytest.approx(first["latency"]["total"]["p50_ms"])
    assert row0.latency_p95_ms == pytest.approx(first["latency"]["total"]["p95_ms"])

    row1 = node_row(target(node), _doc(second), state)
    assert row1.lock_waits_per_s == 0.0  # the cluster was idle between the two reads
    assert row1.stalls_per_s == 0.0
    # a new node sample (sampled_at moved) adds to the CPU history; every round adds a
    # latency point
    assert row1.cpu_history == (first["process"]["cpu_percent"], second["process"]["cpu_percent"])
    assert len(row1.latency_history) == 2


def test_rates_are_counter_deltas_over_the_nodes_clock() -> None:
    node = CLUSTER["nodes"][1]
    first = copy.deepcopy(node["stats"][0])
    first["locks"][0]["slow_waits"] = 4  # waits past --lock-warn-ms, as a node counts them
    later = copy.deepcopy(first)
    later["at"] = first["at"] + 2.0
    later["locks"][0]["slow_waits"] += 10
    later["locks"][0]["contended"] += 50  # waits under the threshold do not count
    later["stalls"]["stalls"] += 3
    state = _state()
    node_row(target(node), _doc(first), state)
    row = node_row(target(node), _doc(later), state)
    assert row.lock_waits_per_s == pytest.approx(5.0)
    assert row.stalls_per_s == pytest.approx(1.5)
    assert len(row.cpu_history) == 1  # same sampled_at: the same CPU sample, not added twice

    restarted = copy.deepcopy(first)  # counters went back: a new process, no rate
    restarted["at"] = later["at"] + 1.0
    assert node_row(target(node), _doc(restarted), state).lock_waits_per_s is None


def test_latency_is_missing_until_a_job_ends() -> None:
    node = CLUSTER["nodes"][2]
    fresh = copy.deepcopy(node["stats"][0])
    for phase in fresh["latency"].values():
        phase.update(count=0, sum_seconds=0.0, window=0, p50_ms=0.0, p95_ms=0.0)
    row = node_row(target(node), _doc(fresh), _state())
    assert row.latency_p50_ms is None and row.latency_p95_ms is None
    assert row.latency_history == (None,)
    assert row.role == "R"  # slots not known yet (GET /api/v1/node not answered)


def test_absent_row_has_no_figures_and_leaves_a_gap() -> None:
    node = CLUSTER["nodes"][0]
    state = _state()
    node_row(target(node), _doc(node["stats"][0]), state)
    row = absent_row(target(node), NodeStatus.DOWN, "its process has exited", state)
    assert row.status is NodeStatus.DOWN and row.error
    figures = (row.cpu_percent, row.rss_bytes, row.peers, row.lock_waits_per_s, row.role)
    assert figures == (None,) * 5
    assert row.cpu_history[-1] is None
    assert state.prev_at is None  # the next answer starts a new baseline


def test_role_of() -> None:
    assert role_of(2, 0, 0, 0) == "C"
    assert role_of(2, 1, 0, 0) == "R+C"
    assert role_of(None, 0, 0, 1) == "R"
    assert role_of(None, 0, 0, 0) is None


def test_job_rows_from_captured_lists() -> None:
    rows = [
        JobRow.from_record(_record(record), node["name"])
        for node in CLUSTER["nodes"]
        for record in node["jobs"]["jobs"]
    ]
    merged = merge_jobs([rows, rows[:2]])
    assert len(merged) == len(rows) == 5  # listed twice, shown once
    assert [j.created_at for j in merged] == sorted((j.created_at for j in rows), reverse=True)
    by_state = {j.state for j in merged}
    assert by_state == {"completed", "error"}
    failed = next(j for j in merged if j.state == "error")
    assert failed.terminal and failed.total_s is not None and failed.total_s > 30
    assert "no node bid" in failed.reason
    c3 = next(j for j in merged if j.concurrency == 3)
    assert c3.verifier == "deterministic" and c3.executions == 3


def test_summary_sums_the_nodes_that_answered() -> None:
    rows = [node_row(target(n), _doc(n["stats"][1]), _state()) for n in CLUSTER["nodes"]]
    down = NodeRow(peer_id="x", name="node-9", index=9, api="", status=NodeStatus.DOWN)
    summary = ClusterSummary.of([*rows, down])
    assert (summary.nodes, summary.up, summary.down, summary.unreachable) == (4, 3, 1, 0)
    assert summary.jobs_completed == 4 and summary.jobs_failed == 1 and summary.jobs_open == 0
    assert summary.rss_bytes == sum(n["stats"][1]["process"]["rss_bytes"] for n in CLUSTER["nodes"])
    nobody = ClusterSummary.of([down])
    assert nobody.cpu_percent is None and nobody.jobs_open is None


# -- sorting and filtering -----------------------------------------------------------


def test_sort_records_puts_unknown_last_both_ways() -> None:
    rows = [(1, 5.0), (2, None), (3, 1.0), (4, 5.0)]
    key: Callable[[tuple[int, float | None]], float | None] = lambda r: r[1]  # noqa: E731
    tie = lambda r: r[0]  # noqa: E731
    assert sort_records(rows, key, tiebreak=tie) == [(3, 1.0), (1, 5.0), (4, 5.0), (2, None)]
    assert sort_records(rows, key, reverse=True, tiebreak=tie) == [
        (1, 5.0),
        (4, 5.0),
        (3, 1.0),
        (2, None),
    ]


@given(
    hst.lists(
        hst.tuples(hst.integers(), hst.one_of(hst.none(), hst.integers(-5, 5))),
        unique_by=lambda r: r[0],
        max_size=30,
    ),
    hst.booleans(),
)
def test_sort_records_is_a_total_stable_order(
    rows: list[tuple[int, int | None]], reverse: bool
) -> None:
    out = sort_records(rows, lambda r: r[1], reverse=reverse, tiebreak=lambda r: r[0])
    assert sorted(out) == sorted(rows)
    known = [r for r in out if r[1] is not None]
    assert out[len(known) :] == sorted(r for r in rows if r[1] is None)
    values = [r[1] for r in known]
    assert values == sorted(values, reverse=reverse)  # type: ignore[type-var]
    for a, b in itertools.pairwise(known):
        if a[1] == b[1]:
            assert a[0] < b[0]  # ties in tiebreak order, whichever the direction
    assert out == sort_records(
        list(reversed(rows)), lambda r: r[1], reverse=reverse, tiebreak=lambda r: r[0]
    )


def test_matches() -> None:
    text = NodeRow(
        peer_id="12D3KooWAbc",
        name="node-3",
        index=3,
        api="",
        status=NodeStatus.UNREACHABLE,
        role="R+C",
        bad_actor=True,
    ).search_text
    assert matches(text, "")
    assert matches(text, "NODE-3")
    assert matches(text, "unreach  node-3")
    assert matches(text, "bad-actor")
    assert not matches(text, "node-3 down")
    assert not matches(text, "node-4")
    assert not matches(text, "host-")  # on no simulated host


def test_a_node_on_a_simulated_host_matches_its_host() -> None:
    row = NodeRow(peer_id="12D3KooWAbc", name="node-3", index=3, api="", status=NodeStatus.UP)
    text = dataclasses.replace(row, host=2).search_text
    assert matches(text, "host-2") and not matches(text, "host-1")


@given(hst.text(max_size=20), hst.text(max_size=10))
def test_matches_every_word(text: str, query: str) -> None:
    assert matches(text, query) == all(w in text.lower() for w in query.lower().split())


# -- ClusterSource over a mock transport --------------------------------------------


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_source_polls_every_node_and_computes_rates() -> None:
    fake = FakeCluster()

    async def go() -> tuple[Any, Any, Any]:
        transport = httpx.MockTransport(fake.handler)
        async with ClusterSource(targets=fake.targets(), transport=transport) as source:
            first = await source.poll()
            second = await source.poll()
            return first, second, source.statistics()

    first, second, stats = _run(go())
    assert [r.status for r in second.nodes] == [NodeStatus.UP] * 3
    assert all(r.lock_waits_per_s is None for r in first.nodes)
    assert all(r.lock_waits_per_s == 0.0 for r in second.nodes)
    assert [r.role for r in second.nodes] == ["R+C", "R+C", "R+C"]
    assert second.summary.up == 3 and second.summary.jobs_completed == 4
    assert not second.jobs_fetched and second.jobs == ()  # nobody watches jobs
    # /api/v1/node once per node; no jobs lists
    assert sum(r.endswith("/api/v1/node") for r in fake.requests) == 3
    assert not any(r.endswith("/api/v1/jobs") for r in fake.requests)
    assert stats.rounds == 2 and stats.requests == 9 and stats.failures == 0
    assert stats.in_flight == 0


def test_source_fetches_jobs_only_when_they_may_have_changed() -> None:
    fake = FakeCluster()

    async def go() -> Any:
        transport = httpx.MockTransport(fake.handler)
        async with ClusterSource(targets=fake.targets(), transport=transport) as source:
            source.watch_jobs = True
            await source.poll()
            await source.poll()
            return await source.poll()

    snapshot = _run(go())
    assert snapshot.jobs_fetched and len(snapshot.jobs) == 5
    assert {j.requester_name for j in snapshot.jobs} == {"node-0", "node-1", "node-2"}
    # counters unchanged and no open job: each node's list was fetched once in 3 rounds
    assert sum(r.endswith("/api/v1/jobs") for r in fake.requests) == 3


def test_source_reports_unreachable_and_down_nodes() -> None:
    fake = FakeCluster()
    fake.failing.add("node1.test")
    fake.slow.add("node2.test")
    dead_pid = _dead_pid()

    async def go() -> Any:
        targets = fake.targets()
        targets[2] = target(CLUSTER["nodes"][2], pid=dead_pid, started=1.0)
        transport = httpx.MockTransport(fake.handler)
        async with ClusterSource(targets=targets, transport=transport, timeout=0.5) as source:
            return await source.poll(), source.statistics()

    snapshot, stats = _run(go())
    up, failing, dead = snapshot.nodes
    assert up.status is NodeStatus.UP
    assert failing.status is NodeStatus.UNREACHABLE and "HTTP 500" in failing.error
    assert failing.cpu_percent is None
    assert dead.status is NodeStatus.DOWN  # no answer, and its process is gone
    assert snapshot.summary.up == 1 and snapshot.summary.cpu_percent == up.cpu_percent
    assert stats.failures == 2


def _dead_pid() -> int:
    """A pid no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_source_follows_the_state_file(tmp_path: Path) -> None:
    nodes = CLUSTER["nodes"]
    entries = [
        ds.NodeEntry(
            index=n["index"],
            pid=_dead_pid(),
            started=1.0,
            peer_id=n["peer_id"],
            multiaddr="",
            api=f"http://node{n['index']}.test",
            swarm_port=0,
            api_port=0,
            data_dir="",
            log_file="",
        )
        for n in nodes
    ]
    fake = FakeCluster()

    async def go() -> list[Any]:
        transport = httpx.MockTransport(fake.handler)
        seen = []
        async with ClusterSource(tmp_path, transport=transport) as source:
            seen.append(await source.poll())  # no cluster.json yet
            ds.save(tmp_path, ds.ClusterState(1, 1.0, 1.0, entries[:2]))
            seen.append(await source.poll())
            ds.save(tmp_path, ds.ClusterState(1, 1.0, 1.0, entries))
            os.utime(ds.state_path(tmp_path), (1e9, 2e9))  # a new mtime however fast we are
            seen.append(await source.poll())
            ds.remove(tmp_path)
            seen.append(await source.poll())
        return seen

    before, two, three, after = _run(go())
    assert not before.cluster_found and before.nodes == ()
    assert two.cluster_found and [r.name for r in two.nodes] == ["node-0", "node-1"]
    assert [r.name for r in three.nodes] == ["node-0", "node-1", "node-2"]
    assert not after.cluster_found and after.nodes == ()


def test_a_document_of_another_shape_is_reported_not_raised() -> None:
    fake = FakeCluster()
    broken = {"at": 1.0, "process": {"cpu_percent": "lots"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "node0.test" and request.url.path == "/api/v1/stats":
            return httpx.Response(200, json=broken)
        if request.url.host == "node1.test":
            return httpx.Response(200, content=b"<html>not json</html>")
        return fake.handler(request)

    async def go() -> Any:
        transport = httpx.MockTransport(handler)
        async with ClusterSource(targets=fake.targets(), transport=transport) as source:
            source.watch_jobs = True
            return await source.poll()

    snapshot = _run(go())
    odd, garbled, fine = snapshot.nodes
    assert odd.status is NodeStatus.UNREACHABLE and "unexpected answer" in odd.error
    assert garbled.status is NodeStatus.UNREACHABLE and "unexpected answer" in garbled.error
    assert fine.status is NodeStatus.UP
    assert [j.requester_name for j in snapshot.jobs] == ["node-2"]
