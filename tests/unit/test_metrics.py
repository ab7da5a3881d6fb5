"""node.metrics: the latency window, the resource sampler, the JSON and Prometheus views."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from types import MappingProxyType

import psutil
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from node.compute import ComputeStatistics
from node.metrics import (
    PHASES,
    LatencyWindow,
    NodeStatistics,
    PhaseLatencies,
    ResourceSampler,
    descendants,
    document,
    node_registry,
)
from node.p2p.transport import TransportStatistics
from node.requester import RequesterStatistics
from profiles.locks import LockStatistics
from profiles.stalls import StallStatistics
from tests.conftest import wait_until, wait_until_async

pytestmark = pytest.mark.timeout(60)

latencies = st.lists(
    st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=1, max_size=300
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# -- the latency window --------------------------------------------------------------


@given(latencies)
def test_percentiles_lie_between_min_and_max_and_are_monotone(values: list[float]) -> None:
    window = LatencyWindow()
    for value in values:
        window.observe(value)
    s = window.statistics()
    lo, hi = min(values) * 1000, max(values) * 1000
    assert lo <= s.p50_ms <= s.p95_ms <= s.p99_ms <= s.max_ms == hi
    assert (s.count, s.window) == (len(values), len(values))
    assert s.sum_seconds == pytest.approx(sum(values))


@given(latencies, st.integers(min_value=1, max_value=50))
def test_the_window_keeps_only_the_last_samples(values: list[float], size: int) -> None:
    window = LatencyWindow(max_samples=size)
    for value in values:
        window.observe(value)
    kept = values[-size:]
    s = window.statistics()
    assert s.window == len(kept) and s.count == len(values)
    assert s.p99_ms == nearest_rank(kept, 0.99) * 1000
    assert s.max_ms == max(kept) * 1000


@given(latencies, latencies)
def test_the_window_drops_samples_older_than_max_age(old: list[float], new: list[float]) -> None:
    clock = FakeClock()
    window = LatencyWindow(max_age_s=60.0, clock=clock)
    for value in old:
        window.observe(value)
    clock.now = 61.0
    assert window.statistics().window == 0, "every old sample has aged out"
    for value in new:
        window.observe(value)
    s = window.statistics()
    assert s.window == len(new) and s.count == len(old) + len(new)
    assert s.p50_ms == nearest_rank(new, 0.5) * 1000 and s.max_ms == max(new) * 1000


def test_an_empty_window_reads_zero_and_bad_latencies_do_no_harm() -> None:
    window = LatencyWindow()
    s = window.statistics()
    assert (s.count, s.window, s.p50_ms, s.p99_ms, s.max_ms) == (0, 0, 0.0, 0.0, 0.0)
    window.observe(-0.5)
    window.observe(math.inf)
    window.observe(math.nan)
    s = window.statistics()
    assert (s.count, s.max_ms, s.sum_seconds) == (1, 0.0, 0.0)


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        LatencyWindow(max_samples=0)
    with pytest.raises(ValueError, match="max_age_s"):
        LatencyWindow(max_age_s=0)


def test_phase_latencies_keep_a_window_per_phase() -> None:
    phases = PhaseLatencies()
    phases.observe("total", 1.5)
    phases.observe("run", 0.25)
    stats = phases.statistics()
    assert tuple(stats) == PHASES
    assert stats["total"].max_ms == 1500.0 and stats["run"].p50_ms == 250.0
    assert all(stats[p].count == 0 for p in PHASES if p not in ("total", "run"))


# -- the resource sampler ------------------------------------------------------------


@pytest.fixture
def process_tree() -> Iterator[subprocess.Popen[bytes]]:
    """A shell with two sleeping children, standing in for a container's processes."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        wait_until(
            lambda: len(psutil.Process(proc.pid).children()) >= 2,
            10,
            0.01,
            "the shell to start its two children",
        )
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


def test_the_sampler_reads_the_node_process() -> None:
    s = ResourceSampler().sample()
    assert s.at > 0
    assert s.process.rss_bytes > 0 and s.process.threads >= 1 and s.process.open_fds > 0
    assert s.process.cpu_seconds > 0
    assert (s.containers.count, s.containers.rss_bytes) == (0, 0)


def test_the_sampler_sums_a_container_and_its_descendants(
    process_tree: subprocess.Popen[bytes],
) -> None:
    shell = process_tree.pid
    expected = {c.pid for c in psutil.Process(shell).children(recursive=True)}
    assert len(expected) == 2
    assert set(descendants(shell)) == expected
    sampler = ResourceSampler()
    s = sampler.sample([shell])
    assert (s.containers.count, s.containers.processes) == (1, 3)
    assert s.containers.rss_bytes >= psutil.Process(shell).memory_info().rss > 0


def test_a_vanished_process_is_skipped_not_raised() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    s = ResourceSampler().sample([gone.pid])
    assert (s.containers.count, s.containers.processes, s.containers.rss_bytes) == (0, 0, 0)
    assert descendants(gone.pid) == []


def test_the_sampler_task_samples_and_survives_a_failing_source() -> None:
    calls = 0

    async def flaky_pids() -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the docker daemon went away")
        return []

    async def main() -> None:
        sampler = ResourceSampler(interval=0.01)

        def asked_again() -> bool:
            sampler.statistics()  # watched: it samples each interval
            return calls >= 2

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler.run, flaky_pids)
            await wait_until_async(asked_again, 10, 0.01, "the sampler to ask after a failure")
            nursery.cancel_scope.cancel()
        assert sampler.statistics().process.rss_bytes > 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_unwatched_sampler_sleeps_and_a_read_brings_it_a_fresh_sample() -> None:
    calls = 0

    async def no_containers() -> list[int]:
        nonlocal calls
        calls += 1
        return []

    async def main() -> None:
        sampler = ResourceSampler(interval=0.01, idle_interval=3600)

        def sampled_twice_more() -> bool:
            sampler.statistics()  # watched: it samples each interval
            return calls >= 3

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler.run, no_containers)
            await trio.testing.wait_all_tasks_blocked()  # its first sample, then it waits
            assert calls == 1
            # Most of its idle interval, on the mock clock: unwatched, it does not sample.
            await trio.sleep(3000)
            assert calls == 1
            first = sampler.statistics()  # a read wakes it, and is never stale
            assert first.at > 0
            await wait_until_async(sampled_twice_more, 10, 0.01, "two samples, watched")
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the JSON and Prometheus views ---------------------------------------------------


def fake_statistics() -> NodeStatistics:
    phases = PhaseLatencies()
    for seconds in (0.1, 0.2, 0.4):
        phases.observe("total", seconds)
    sampler = ResourceSampler()
    return NodeStatistics(
        node="QmNode",
        at=time.time(),
        resources=sampler.sample(),
        transport=TransportStatistics(
            connected_peers=3,
            direct_peers=2,
            topic_peers=3,
            mesh_peers=2,
            gossip_in=10,
            gossip_out=4,
            direct_in=7,
            direct_out=8,
            direct_failed=1,
            dropped=MappingProxyType({"gossip_invalid_spec": 2, "direct_not_requester": 1}),
        ),
        requester=RequesterStatistics(
            open_jobs=1, bids_received=5, completed=3, failed=1, reruns=1, unsealable=0
        ),
        compute=ComputeStatistics(bids_sent=6, running=2),
        latency=phases.statistics(),
    )


def lock(name: str, site: str, wait_ns: int) -> LockStatistics:
    return LockStatistics(
        name=name,
        created_at=site,
        acquisitions=10,
        contended=2,
        total_wait_ns=wait_ns,
        mean_wait_ns=wait_ns / 2,
        max_wait_ns=wait_ns,
        p99_wait_ns=wait_ns,
        max_hold_ns=3_000_000,
        top_waiters=(("a.py:1", 2),),
        top_holders=(),
    )


STALLS = StallStatistics(
    threshold_ms=20.0,
    steps=1000,
    stalls=2,
    cpu_stalls=1,
    stall_ms_total=50.0,
    stall_cpu_ms_total=30.0,
    worst_stall_ms=30.0,
    worst_task="t",
    worst_stack=(),
    per_task=(),
    sched_delay_count=100,
    sched_delay_mean_ms=0.5,
    sched_delay_p99_ms=2.0,
    sched_delay_max_ms=4.0,
)


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    locks = (lock("store.sqlite", "node/node.py:10", 5_000_000), lock("store.sqlite", "x.py:2", 0))
    registry = node_registry(fake_statistics, lambda: locks, lambda: STALLS)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    samples: list[Sample] = [s for f in families for s in f.samples]
    keyed = {(s.name, frozenset(s.labels.items())): s.value for s in samples}
    assert len(keyed) == len(samples), "a series appears twice"
    return keyed


def test_the_collector_output_parses_with_the_documented_names_and_values() -> None:
    got = scrape()

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert value("bacalhau_node_info", node="QmNode") == 1
    assert value("process_resident_memory_bytes") > 0
    assert value("process_cpu_seconds_total") > 0
    assert value("bacalhau_gossip_messages_total", direction="out") == 4
    assert value("bacalhau_direct_messages_total", direction="in") == 7
    assert value("bacalhau_messages_dropped_total", reason="gossip_invalid_spec") == 2
    assert value("bacalhau_bids_sent_total") == 6
    assert value("bacalhau_bids_received_total") == 5
    assert value("bacalhau_jobs_completed_total") == 3
    assert value("bacalhau_jobs_failed_total") == 1
    assert value("bacalhau_shard_reruns_total") == 1
    assert value("bacalhau_jobs_open") == 1
    assert value("bacalhau_executions_running") == 2
    assert value("bacalhau_job_phase_seconds_count", phase="total") == 3
    assert value("bacalhau_job_phase_seconds_sum", phase="total") == pytest.approx(0.7)
    assert value("bacalhau_job_phase_seconds", phase="total", quantile="0.5") == 0.2
    assert value("bacalhau_job_phase_seconds", phase="total", quantile="0.99") == 0.4
    assert math.isnan(value("bacalhau_job_phase_seconds", phase="run", quantile="0.5"))
    # Two locks of one name made at two sites are two series.
    waited = value("bacalhau_lock_wait_seconds_total", lock="store.sqlite", site="node/node.py:10")
    assert waited == pytest.approx(0.005)
    assert value("bacalhau_lock_contended_total", lock="store.sqlite", site="x.py:2") == 2
    assert value("bacalhau_loop_stalls_total") == 2
    assert value("bacalhau_loop_stall_seconds_total") == pytest.approx(0.05)
    assert value("bacalhau_loop_sched_delay_seconds", quantile="0.99") == pytest.approx(0.002)
    assert value("bacalhau_loop_sched_delay_seconds_count") == 100


def test_the_registry_is_the_nodes_own() -> None:
    from prometheus_client import REGISTRY

    before = {m.name for m in REGISTRY.collect()}
    node_registry(fake_statistics, lambda: (), lambda: STALLS)
    assert {m.name for m in REGISTRY.collect()} == before


def test_the_json_document_has_every_documented_key() -> None:
    doc = document(fake_statistics())
    assert set(doc) == {
        "node", "at", "sampled_at", "process", "containers", "gossip", "direct", "bids",
        "jobs", "latency", "output",
    }  # fmt: skip
    assert set(doc["process"]) == {"cpu_percent", "cpu_seconds", "rss_bytes", "threads", "open_fds"}
    assert set(doc["containers"]) == {"count", "processes", "cpu_percent", "rss_bytes"}
    assert doc["gossip"]["dropped"] == {
        "total": 3,
        "by_reason": {"gossip_invalid_spec": 2, "direct_not_requester": 1},
    }
    assert doc["direct"] == {
        "peers": 2, "in": 7, "out": 8, "failed": 1, "by_kind": {}, "streams": None
    }  # fmt: skip
    assert doc["bids"] == {"sent": 6, "received": 5}
    assert doc["jobs"] == {
        "open": 1,
        "running": 2,
        "completed": 3,
        "failed": 1,
        "reruns": 1,
        "unsealable_proposals": 0,
    }
    assert set(doc["latency"]) == set(PHASES)
    assert set(doc["latency"]["total"]) == {
        "count", "sum_seconds", "window", "p50_ms", "p95_ms", "p99_ms", "max_ms",
    }  # fmt: skip
