"""Node metrics: job latency per phase, the node's resource sample, and their two views.

This module owns:

* :class:`LatencyWindow`, one phase's latencies over a sliding window (the last
  ``max_samples`` observations, none older than ``max_age_s``) with nearest-rank
  p50/p95/p99 and max, and :class:`PhaseLatencies`, a window per phase of a job
  (:data:`PHASES`), which the roles reach as ``NodeContext.metrics``. The requester
  observes every phase of the jobs it owns, ``run`` included (the compute node times
  the run and reports it in ``ResultsProposed``): a node's latency figures are those
  of the jobs submitted to it, and no job is counted on two nodes.
* :class:`ResourceSampler`, a task that once a second samples with psutil the node
  process (CPU, RSS, threads, file descriptors) and the processes of the node's
  running containers, and keeps the last sample as a frozen record. A sample never
  crashes the node: processes vanish between two calls.
* :class:`NodeStatistics`, one read of every figure of a node; :func:`document`, its
  JSON for ``GET /api/v1/stats``; and :class:`NodeCollector`, its Prometheus form for
  ``GET /metrics``, registered in a registry of the node's own (:func:`node_registry`).

The counters themselves live where things happen (transport, requester, compute,
locks, the loop's stall detector); this module only reads their ``statistics()``.
The requester and compute sit above this module (they reach the latencies through
their :class:`~node.context.NodeContext`), so their records are read as the shapes
:class:`RequesterFigures` and :class:`ComputeFigures`, not imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, Protocol

import psutil
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.output import OutputStoreStatistics
from profiles.locks import LockStatistics
from profiles.quantiles import nearest_rank
from profiles.stalls import StallStatistics

if TYPE_CHECKING:
    from node.p2p.transport import TransportStatistics

log = logging.getLogger(__name__)

Phase = Literal["to_first_bid", "to_accepted", "run", "verify", "publish", "total"]
#: A job's phases, each timed in seconds: submission to the first bid received, to
#: the first bid accepted; one run (as its compute node measured it); the verifier's
#: verdict; the verdict to every accepted result published; submission to the end
#: (completed or error).
PHASES: Final[tuple[Phase, ...]] = typing.get_args(Phase)
QUANTILES: Final = (0.5, 0.95, 0.99)
DEFAULT_MAX_SAMPLES = 1024
DEFAULT_MAX_AGE_S = 300.0
SAMPLE_INTERVAL_S = 1.0
# Unwatched and with no container running, a node samples itself this seldom: at
# 50 nodes, sampling each second was a fifth of the idle cluster's CPU.
IDLE_SAMPLE_INTERVAL_S = 30.0
# A read of the statistics keeps the node "watched" this long.
WATCHED_S = 10.0


# -- latency ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyStatistics:
    """One phase's latencies.

    ``count`` and ``sum_seconds`` cover every observation since the node started (a
    Prometheus summary's ``_count`` and ``_sum``). The percentiles (nearest rank) and
    ``max_ms`` cover the ``window`` samples still in the window, and are 0.0 when it is
    empty.
    """

    count: int
    sum_seconds: float
    window: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


class LatencyWindow:
    """One phase's latencies over a sliding window: the last ``max_samples``
    observations, less those older than ``max_age_s`` seconds of ``clock``.

    Observing is O(1) amortised; :meth:`statistics` sorts the window, so it belongs to
    a scrape, not to a hot path. Not thread-safe: the node's loop only.
    """

    def __init__(
        self,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples}")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._max_age_s = max_age_s
        self._clock = clock
        self._count = 0
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one latency; a negative one (a clock stepped back) counts as 0, and
        a NaN or infinite one (a peer's report may be garbage) is ignored."""
        if not math.isfinite(seconds):
            return
        seconds = max(0.0, seconds)
        now = self._clock()
        self._expire(now)
        self._samples.append((now, seconds))
        self._count += 1
        self._sum += seconds

    def _expire(self, now: float) -> None:
        horizon = now - self._max_age_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def statistics(self) -> LatencyStatistics:
        self._expire(self._clock())
        ordered = sorted(seconds for _, seconds in self._samples)
        p50, p95, p99 = (nearest_rank(ordered, q, 0.0) * 1000 for q in QUANTILES)
        return LatencyStatistics(
            count=self._count,
            sum_seconds=self._sum,
            window=len(ordered),
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            max_ms=ordered[-1] * 1000 if ordered else 0.0,
        )


class PhaseLatencies:
    """A :class:`LatencyWindow` per phase of a job (:data:`PHASES`), each made by
    ``window``."""

    def __init__(self, window: Callable[[], LatencyWindow] = LatencyWindow) -> None:
        self._windows = {phase: window() for phase in PHASES}

    def observe(self, phase: Phase, seconds: float) -> None:
        self._windows[phase].observe(seconds)

    def statistics(self) -> dict[Phase, LatencyStatistics]:
        return {phase: window.statistics() for phase, window in self._windows.items()}


# -- resources --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """The node process. ``cpu_percent`` is of one core, over the last interval."""

    cpu_percent: float
    cpu_seconds: float  # user + system since the process started
    rss_bytes: int
    threads: int
    open_fds: int


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """The node's running containers: their main processes and every descendant.

    ``cpu_percent`` (of one core) and ``rss_bytes`` are sums over those processes; a
    process seen for the first time counts 0 % (psutil needs two readings), and shared
    pages count once per process.
    """

    count: int
    processes: int
    cpu_percent: float
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class ResourceStatistics:
    """One sample; ``at`` (wall clock, seconds) is 0.0 before the first."""

    at: float
    process: ProcessUsage
    containers: ContainerUsage


_NO_SAMPLE = ResourceStatistics(0.0, ProcessUsage(0.0, 0.0, 0, 0, 0), ContainerUsage(0, 0, 0.0, 0))

ContainerPids = Callable[[], Awaitable[Sequence[int]]]
"""Returns the host PID of each running container's main process."""


def descendants(pid: int) -> list[int]:
    """``pid``'s descendants, from the kernel's per-thread ``children`` lists (Linux;
    where the file is missing none are found). psutil's ``children()`` reads every
    process on the machine instead: ~5 ms a call here, too much once a second for each
    container of each of 50 nodes."""
    found: list[int] = []
    seen = {pid}
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            kids = [
                int(kid)
                for task in Path(f"/proc/{parent}/task").iterdir()
                for kid in (task / "children").read_text().split()
            ]
        except (OSError, ValueError):
            continue  # the process (or a thread of it) ended meanwhile
        for kid in kids:
            if kid not in seen:  # a PID reused mid-walk must not loop
                seen.add(kid)
                found.append(kid)
                todo.append(kid)
    return found


class ResourceSampler:
    """Samples the node process and its containers.

    Every ``interval`` seconds while someone reads :meth:`statistics` (within the
    last :data:`WATCHED_S`) or a container runs, else every ``idle_interval``: a
    node nobody watches spends (almost) nothing on watching itself. A read finding
    the last sample older than ``interval`` samples the process at once (the
    containers' part is the last sample's), so a reader never sees a stale figure.

    :meth:`run` is the task; :meth:`statistics` the last sample. :meth:`sample` is
    blocking (it reads /proc) and keeps psutil handles between calls, so it has one
    caller at a time: :meth:`run` (on the loop or in its worker thread), or a test.
    """

    def __init__(
        self,
        interval: float = SAMPLE_INTERVAL_S,
        *,
        idle_interval: float = IDLE_SAMPLE_INTERVAL_S,
        pid: int | None = None,
    ) -> None:
        self._interval = interval
        self._idle_interval = max(interval, idle_interval)
        self._own = psutil.Process(pid)
        # Kept between samples: cpu_percent is the CPU time since the last call on
        # the same handle.
        self._procs: dict[int, psutil.Process] = {}
        self._latest = _NO_SAMPLE
        self._failing = False
        self._read_at = -math.inf  # monotonic time of the last statistics() call
        self._wake = trio.Event()
        self._containers = False

    def statistics(self) -> ResourceStatistics:
        now = time.monotonic()
        if now - self._read_at > WATCHED_S:
            self._wake.set()  # back to sampling each interval
        self._read_at = now
        if not self._containers and time.time() - self._latest.at > self._interval:
            with contextlib.suppress(Exception):  # the run loop logs failures
                self._latest = self.sample()
        return self._latest

    async def run(self, container_pids: ContainerPids) -> NoReturn:
        """Sample until cancelled; a failed sample is logged and skipped, never raised.

        The node process alone is sampled on the loop (~0.2 ms: a worker thread would
        cost more than the reads); with containers, in a worker thread, since walking
        their processes reads /proc once per process and thread.
        """
        while True:
            try:
                pids = await container_pids()
                self._containers = bool(pids)
                if pids:
                    self._latest = await trio.to_thread.run_sync(self.sample, pids)
                else:
                    self._latest = self.sample()
                self._failing = False
            except Exception:
                # Once per run of failures: a persistent one must not flood the log.
                if not self._failing:
                    log.warning("resource sample failed", exc_info=True)
                self._failing = True
            watched = time.monotonic() - self._read_at <= WATCHED_S
            self._wake = trio.Event()
            with trio.move_on_after(
                self._interval if watched or self._containers else self._idle_interval
            ):
                await self._wake.wait()
                await trio.sleep(self._interval)

    def sample(self, container_pids: Sequence[int] = ()) -> ResourceStatistics:
        """Sample now. ``container_pids``: each container's main process."""
        own = self._own
        with own.oneshot():
            cpu = own.cpu_times()
            process = ProcessUsage(
                cpu_percent=own.cpu_percent(None),
                cpu_seconds=cpu.user + cpu.system,
                rss_bytes=own.memory_info().rss,
                threads=own.num_threads(),
                open_fds=own.num_fds(),
            )
        return ResourceStatistics(time.time(), process, self._sample_containers(container_pids))

    def _sample_containers(self, main_pids: Sequence[int]) -> ContainerUsage:
        pids = dict.fromkeys(p for main in main_pids for p in (main, *descendants(main)))
        procs: dict[int, psutil.Process] = {}
        cpu, rss = 0.0, 0
        for pid in pids:
            try:
                proc = self._procs.get(pid) or psutil.Process(pid)
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended (or became a zombie) since it was listed
            procs[pid] = proc
        self._procs = procs
        count = sum(1 for main in main_pids if main in procs)
        return ContainerUsage(count, len(procs), cpu, rss)


# -- one read of everything, as JSON ----------------------------------------------


class RequesterFigures(Protocol):
    """What this module reads of :class:`node.requester.RequesterStatistics`."""

    @property
    def open_jobs(self) -> int: ...
    @property
    def bids_received(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def reruns(self) -> int: ...
    @property
    def unsealable(self) -> int: ...


class ComputeFigures(Protocol):
    """What this module reads of :class:`node.compute.ComputeStatistics`."""

    @property
    def bids_sent(self) -> int: ...
    @property
    def running(self) -> int: ...


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """Every figure of one node at ``at`` (wall clock, seconds), except the locks and
    the loop's stalls, which have sources of their own (see :class:`NodeCollector`)."""

    node: str
    at: float
    resources: ResourceStatistics
    transport: TransportStatistics
    requester: RequesterFigures
    compute: ComputeFigures
    latency: Mapping[Phase, LatencyStatistics]
    output: OutputStoreStatistics | None = None  # jobs' live output kept as requester


def document(stats: NodeStatistics) -> dict[str, Any]:
    """``stats`` as plain JSON-able data: ``GET /api/v1/stats`` less the keys the node
    adds from ``Node.contention()`` (``lock_warn_ms``, ``locks``, ``stalls``)."""
    t, requester, compute = stats.transport, stats.requester, stats.compute
    return {
        "node": stats.node,
        "at": stats.at,
        "sampled_at": stats.resources.at,
        "process": dataclasses.asdict(stats.resources.process),
        "containers": dataclasses.asdict(stats.resources.containers),
        "gossip": {
            "peers": t.topic_peers,
            "mesh": t.mesh_peers,
            "connected": t.connected_peers,
            "events_in": t.gossip_in,
            "events_out": t.gossip_out,
            # Every message the node dropped; the reason names its channel.
            "dropped": {"total": t.dropped_total, "by_reason": dict(t.dropped)},
        },
        "direct": {
            "peers": t.direct_peers,
            "in": t.direct_in,
            "out": t.direct_out,
            "failed": t.direct_failed,
            # Gossip and direct job messages by "channel.direction.Kind", and what the
            # direct ones cost in streams opened and dials.
            "by_kind": dict(t.messages),
            "streams": dataclasses.asdict(t.streams) if t.streams is not None else None,
        },
        "bids": {"sent": compute.bids_sent, "received": requester.bids_received},
        "jobs": {
            "open": requester.open_jobs,
            "running": compute.running,
            "completed": requester.completed,
            "failed": requester.failed,
            "reruns": requester.reruns,
            "unsealable_proposals": requester.unsealable,
        },
        "latency": {phase: dataclasses.asdict(s) for phase, s in stats.latency.items()},
        "output": dataclasses.asdict(stats.output) if stats.output is not None else None,
    }


# -- Prometheus ---------------------------------------------------------------------


_Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
_G, _C = GaugeMetricFamily, CounterMetricFamily  # a counter's name is given without _total
_NS, _MS = 1e-9, 1e-3


def _families(rows: Iterable[tuple[_Family, str, str, float]]) -> Iterator[Metric]:
    """An unlabelled family per (kind, name, doc, value)."""
    for family, name, doc, value in rows:
        yield family(name, doc, value=value)


def _by_label(
    family: _Family, name: str, doc: str, label: str, values: Mapping[str, float]
) -> Metric:
    metric = family(name, doc, labels=[label])
    for key, value in values.items():
        metric.add_metric([key], value)
    return metric


def _summary(
    name: str, doc: str, rows: Iterable[tuple[dict[str, str], int, float, Sequence[float]]]
) -> Metric:
    """A summary family: per row (labels, count, sum, a value per quantile of ``QUANTILES``
    or as many of them as given)."""
    metric = Metric(name, doc, "summary")
    for labels, count, total, values in rows:
        for q, value in zip(QUANTILES[-len(values) :], values, strict=True):
            metric.add_sample(name, {**labels, "quantile": str(q)}, value)
        metric.add_sample(f"{name}_count", labels, count)
        metric.add_sample(f"{name}_sum", labels, total)
    return metric


def _phase_quantiles(s: LatencyStatistics) -> tuple[float, ...]:
    # An empty window has no quantiles: NaN, as Prometheus clients report it.
    if not s.window:
        return (math.nan,) * len(QUANTILES)
    return (s.p50_ms * _MS, s.p95_ms * _MS, s.p99_ms * _MS)


def _node_families(s: NodeStatistics) -> Iterator[Metric]:
    process, containers = s.resources.process, s.resources.containers
    t, requester, compute = s.transport, s.requester, s.compute
    pct = "over the last second, % of a core"
    mine = "jobs this node requested"
    yield from _families(
        (
            (_C, "process_cpu_seconds", "User and system CPU time, seconds.", process.cpu_seconds),
            (_G, "process_resident_memory_bytes", "Resident set size.", process.rss_bytes),
            (_G, "process_open_fds", "Open file descriptors.", process.open_fds),
            (_G, "process_threads", "OS threads.", process.threads),
            (_G, "bacalhau_process_cpu_percent", f"CPU {pct}.", process.cpu_percent),
            (_G, "bacalhau_containers_running", "Running containers.", containers.count),
            (_G, "bacalhau_container_processes", "Processes in them.", containers.processes),
            (
                _G,
                "bacalhau_containers_cpu_percent",
                f"Their processes' CPU {pct}.",
                containers.cpu_percent,
            ),
            (
                _G,
                "bacalhau_containers_resident_memory_bytes",
                "Their processes' summed RSS.",
                containers.rss_bytes,
            ),
            (_G, "bacalhau_gossip_peers", "Peers on the jobs topic.", t.topic_peers),
            (_G, "bacalhau_gossip_mesh_peers", "Gossipsub mesh peers.", t.mesh_peers),
            (_G, "bacalhau_gossip_connected_peers", "Gossip host connections.", t.connected_peers),
            (_G, "bacalhau_direct_peers", "Direct host connections.", t.direct_peers),
            (_C, "bacalhau_direct_send_failures", "Direct sends that failed.", t.direct_failed),
            (_C, "bacalhau_bids_sent", "Bids this node sent.", compute.bids_sent),
            (_C, "bacalhau_bids_received", f"Bids on {mine}.", requester.bids_received),
            (_G, "bacalhau_jobs_open", f"The {mine}, not ended.", requester.open_jobs),
            (_C, "bacalhau_jobs_completed", f"The {mine} that completed.", requester.completed),
            (_C, "bacalhau_jobs_failed", f"The {mine} that ended in error.", requester.failed),
            (_G, "bacalhau_executions_running", "Shards running on this node.", compute.running),
            (
                _C,
                "bacalhau_shard_reruns",
                "Shards run again for want of a winner.",
                requester.reruns,
            ),
            (
                _C,
                "bacalhau_proposals_unsealable",
                "Proposals not sealed to this node's key.",
                requester.unsealable,
            ),
        )
    )
    yield _by_label(_G, "bacalhau_node_info", "This node.", "node", {s.node: 1})
    for name, doc, received, sent in (
        ("gossip", "Gossip messages delivered (in), published (out).", t.gossip_in, t.gossip_out),
        ("direct", "Direct job messages received (in), sent (out).", t.direct_in, t.direct_out),
    ):
        by_direction = {"in": received, "out": sent}
        yield _by_label(_C, f"bacalhau_{name}_messages", doc, "direction", by_direction)
    by_kind = _C(
        "bacalhau_messages",
        "Job messages by channel (gossip, direct), direction (in, out) and kind.",
        labels=["channel", "direction", "kind"],
    )
    for key, count in sorted(t.messages.items()):
        by_kind.add_metric(key.split(".", 2), count)
    yield by_kind
    if t.streams is not None:
        warm = t.streams
        doc = "Direct requests sent (requests), and those that opened a stream or dialled first."
        counts = {"requests": warm.requests, "opened": warm.opened, "dialled": warm.dialled}
        yield _by_label(_C, "bacalhau_direct_requests", doc, "what", counts)
    doc = "Messages dropped, by reason (prefixed by channel)."
    yield _by_label(_C, "bacalhau_messages_dropped", doc, "reason", t.dropped)
    yield _summary(
        "bacalhau_job_phase_seconds",
        f"Latency of a phase of the {mine} (quantiles over a sliding window).",
        (
            ({"phase": phase}, ls.count, ls.sum_seconds, _phase_quantiles(ls))
            for phase, ls in s.latency.items()
        ),
    )


_LOCK_FIGURES: tuple[tuple[_Family, str, str, Callable[[LockStatistics], float]], ...] = (
    (_C, "bacalhau_lock_acquisitions", "acquisitions.", lambda s: s.acquisitions),
    (_C, "bacalhau_lock_contended", "acquisitions that waited.", lambda s: s.contended),
    (_C, "bacalhau_lock_slow_waits", "waits past --lock-warn-ms.", lambda s: s.slow_waits),
    (_C, "bacalhau_lock_wait_seconds", "time waited.", lambda s: s.total_wait_ns * _NS),
    (_G, "bacalhau_lock_wait_max_seconds", "longest wait.", lambda s: s.max_wait_ns * _NS),
    (_G, "bacalhau_lock_hold_max_seconds", "longest hold.", lambda s: s.max_hold_ns * _NS),
)


def _lock_families(locks: Sequence[LockStatistics]) -> Iterator[Metric]:
    # Locks group by name and creation site: two same-named locks are two series.
    for family, name, doc, figure in _LOCK_FIGURES:
        metric = family(name, f"Instrumented locks: {doc}", labels=["lock", "site"])
        for lock in locks:
            metric.add_metric([lock.name, lock.created_at], figure(lock))
        yield metric


def _loop_families(s: StallStatistics) -> Iterator[Metric]:
    yield from _families(
        (
            (_C, "bacalhau_loop_steps", "Task steps the trio loop ran.", s.steps),
            (_C, "bacalhau_loop_stalls", f"Task steps over {s.threshold_ms:g} ms.", s.stalls),
            (_C, "bacalhau_loop_stall_seconds", "Time in stalled steps.", s.stall_ms_total * _MS),
            (
                _C,
                "bacalhau_loop_stall_cpu_seconds",
                "CPU time of the loop's thread in stalled steps.",
                s.stall_cpu_ms_total * _MS,
            ),
            (_G, "bacalhau_loop_stall_max_seconds", "Longest stall.", s.worst_stall_ms * _MS),
            (
                _G,
                "bacalhau_loop_sched_delay_max_seconds",
                "Longest scheduling delay.",
                s.sched_delay_max_ms * _MS,
            ),
        )
    )
    count = s.sched_delay_count
    p99 = s.sched_delay_p99_ms * _MS if count else math.nan
    yield _summary(
        "bacalhau_loop_sched_delay_seconds",
        "From a task scheduled to its step (p99 over recent samples).",
        [({}, count, s.sched_delay_mean_ms * count * _MS, (p99,))],
    )


class NodeCollector:
    """Reads a node's figures when scraped: every value comes from a ``statistics()``
    call at that moment, so nothing is counted twice."""

    def __init__(
        self,
        statistics: Callable[[], NodeStatistics],
        locks: Callable[[], Sequence[LockStatistics]],
        stalls: Callable[[], StallStatistics],
    ) -> None:
        self._statistics = statistics
        self._locks = locks
        self._stalls = stalls

    def collect(self) -> Iterator[Metric]:
        yield from _node_families(self._statistics())
        yield from _lock_families(self._locks())
        yield from _loop_families(self._stalls())


def node_registry(
    statistics: Callable[[], NodeStatistics],
    locks: Callable[[], Sequence[LockStatistics]],
    stalls: Callable[[], StallStatistics],
) -> CollectorRegistry:
    """A registry of the node's own with a :class:`NodeCollector`: the process-wide
    default one would mix the figures of nodes that share a process (tests do)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(statistics, locks, stalls))
    return registry
