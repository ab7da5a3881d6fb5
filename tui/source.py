"""The TUI's data layer: every node's HTTP API, polled, as frozen records.

This module owns :class:`ClusterSource`, the poller. One :meth:`ClusterSource.poll`
is one round: it asks every node of the devstack (found in ``cluster.json``, re-read
when it changes) for ``GET /api/v1/stats`` concurrently, at most ``max_concurrency``
requests at a time and each within ``timeout`` seconds, plus ``GET /api/v1/node`` once
per node and ``GET /api/v1/jobs?role=requester`` while jobs are watched (only from nodes
whose requester counters say their jobs may have changed). It keeps, per node, short
histories for sparklines and the previous counters, so rates are deltas between two
rounds of the node's own figures. A node that does not answer is a row whose status
says so (``down``: its process is gone; ``unreachable``: it is running but did not
answer), never an exception.

What it returns is frozen: :class:`NodeRow`, :class:`JobRow`, :class:`ClusterSummary`
and :class:`ClusterSnapshot`, and :meth:`ClusterSource.statistics` gives the poller's
own figures as a :class:`SourceStatistics` (as trio's primitives expose
``statistics()``). Every figure is one a node reported, or ``None`` when there is none
yet; nothing is estimated. The pure helpers the tables use to sort and filter records
(:func:`sort_records`, :func:`matches`) live here too.

It talks to nodes only with :class:`devstack.client.aio.AsyncNodeClient` (one per
node) and decodes the answers straight into the few fields it reads
(:class:`StatsDocument`, :class:`NodeInfoDocument`, :class:`JobsDocument`). It imports
neither Textual nor any node runtime (libp2p, trio): only :mod:`devstack.state`, to
find the cluster, the API client and the job model.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

from devstack import state as st
from devstack.client import calls
from devstack.client.aio import AsyncNodeClient
from devstack.client.calls import Call, NodeApiError
from node.models import JobState

#: A job's states that are final.
TERMINAL_STATES = frozenset(state.value for state in JobState if state.terminal)
DEFAULT_TIMEOUT_S = 3.0
DEFAULT_MAX_CONCURRENCY = 16
DEFAULT_HISTORY = 60
DEFAULT_JOBS_LIMIT = 50
T = TypeVar("T")


# -- the documents, as far as the TUI reads them -------------------------------------
#
# Decoded straight into these (msgspec skips every other field without building it):
# a stats document is ~9 KB of nested JSON, and decoding 50 of them into dicts every
# round made enough garbage for 100 ms collections in the middle of key presses.


class _Process(msgspec.Struct, gc=False):
    cpu_percent: float
    rss_bytes: int


class _Count(msgspec.Struct, gc=False):
    count: int


class _Gossip(msgspec.Struct, gc=False):
    peers: int


class _Bids(msgspec.Struct, gc=False):
    sent: int


class _Jobs(msgspec.Struct, gc=False):
    open: int
    running: int
    completed: int
    failed: int


class _Latency(msgspec.Struct, gc=False):
    window: int
    p50_ms: float
    p95_ms: float


class _Phases(msgspec.Struct, gc=False):
    total: _Latency


class _Lock(msgspec.Struct, gc=False):
    contended: int
    max_wait_ns: int
    slow_waits: int = 0  # waits past the node's --lock-warn-ms


class _Stalls(msgspec.Struct, gc=False):
    stalls: int


class StatsDocument(msgspec.Struct, gc=False):
    """What the TUI reads of ``GET /api/v1/stats`` (``node.metrics.document`` plus the
    node's ``lock_warn_ms``, ``locks`` and ``stalls``)."""

    at: float
    process: _Process
    containers: _Count
    gossip: _Gossip
    bids: _Bids
    jobs: _Jobs
    latency: _Phases
    sampled_at: float | None = None
    lock_warn_ms: float | None = None
    locks: list[_Lock] = msgspec.field(default_factory=list)
    stalls: _Stalls | None = None


class _Capacity(msgspec.Struct, gc=False):
    slots: int


class NodeInfoDocument(msgspec.Struct, gc=False):
    """What the TUI reads of ``GET /api/v1/node``."""

    capacity: _Capacity


class _Deal(msgspec.Struct, gc=False):
    concurrency: int


class _Spec(msgspec.Struct, gc=False):
    engine: str
    deal: _Deal
    verifier: str
    publisher: str
    image: str | None = None
    step: bool = False


class _Job(msgspec.Struct, gc=False):
    id: str
    requester: str
    spec: _Spec
    created_at: float
    shards: int = 1


class JobRecord(msgspec.Struct, gc=False):
    """What the TUI reads of one job of ``GET /api/v1/jobs`` (its executions are
    counted, not decoded)."""

    job: _Job
    state: str
    updated_at: float
    reason: str | None = None
    executions: list[msgspec.Raw] = msgspec.field(default_factory=list)


class JobsDocument(msgspec.Struct, gc=False):
    jobs: list[JobRecord]


_STATS = msgspec.json.Decoder(StatsDocument)
_INFO = msgspec.json.Decoder(NodeInfoDocument)
_JOBS = msgspec.json.Decoder(JobsDocument)


class NodeStatus(enum.StrEnum):
    """What the last round learned of a node."""

    UP = "up"  # answered GET /api/v1/stats
    UNREACHABLE = "unreachable"  # its process runs (or cannot be checked) but it did not answer
    DOWN = "down"  # its recorded process is gone


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """A node to poll: what ``cluster.json`` records of it."""

    index: int
    name: str
    peer_id: str
    api: str
    pid: int | None = None
    started: float | None = None
    bad_actor: bool = False
    host: int | None = None  # its simulated host (`devstack up --hosts`)

    @classmethod
    def from_entry(cls, entry: st.NodeEntry) -> NodeTarget:
        return cls(
            index=entry.index,
            name=entry.name,
            peer_id=entry.peer_id,
            api=entry.api,
            pid=entry.pid,
            started=entry.started,
            bad_actor=entry.bad_actor,
            host=entry.host,
        )


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node as of the last round. Figures are ``None`` when the node did not answer
    or has no such figure yet (a rate needs two rounds; a latency needs a finished job)."""

    peer_id: str
    name: str
    index: int
    api: str
    status: NodeStatus
    error: str = ""  # why the node is not up
    bad_actor: bool = False
    host: int | None = None  # its simulated host (`devstack up --hosts`); None: 127.0.0.1
    role: str | None = None  # "R+C": requested jobs and can run them; "C": only run them
    cpu_percent: float | None = None  # of one core, the node process (psutil, sampled each s)
    rss_bytes: int | None = None
    peers: int | None = None  # gossip topic peers
    running: int | None = None  # shards running on this node
    bids_sent: int | None = None  # since the node started
    open_jobs: int | None = None  # jobs this node requested, not ended
    completed: int | None = None  # jobs this node requested that completed, since it started
    failed: int | None = None  # ... that ended ``error``
    lock_waits_per_s: float | None = None  # lock waits past the threshold per s, last interval
    worst_wait_ms: float | None = None  # longest single lock wait since the node started
    lock_warn_ms: float | None = None  # the node's warning threshold for waits and holds
    stalls: int | None = None  # event-loop steps over the stall threshold, since start
    stalls_per_s: float | None = None  # ... per second over the last interval
    latency_p50_ms: float | None = None  # submit-to-end of its jobs, p50 over its window
    latency_p95_ms: float | None = None
    containers: int | None = None  # its running containers
    cpu_history: tuple[float | None, ...] = ()  # cpu_percent per node sample, oldest first
    latency_history: tuple[float | None, ...] = ()  # latency_p50_ms per round, oldest first
    at: float | None = None  # the node's clock when it answered

    @property
    def search_text(self) -> str:
        """What ``/`` filters on: name, peer id, role, status, ``bad-actor``, ``host-N``."""
        words = [self.name, self.peer_id, self.role or "", self.status.value]
        if self.bad_actor:
            words.append("bad-actor")
        if self.host is not None:
            words.append(f"host-{self.host}")
        return " ".join(words).lower()


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as its requester lists it (``GET /api/v1/jobs?role=requester``)."""

    job_id: str
    requester: str  # peer id
    requester_name: str  # its devstack name, or a short peer id
    state: str
    shards: int
    concurrency: int
    verifier: str
    publisher: str
    engine: str
    image: str
    step: bool
    created_at: float
    updated_at: float
    reason: str = ""
    executions: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def total_s(self) -> float | None:
        """Submission to end, for a job that ended; ``None`` while it runs."""
        return self.updated_at - self.created_at if self.terminal else None

    def age_s(self, now: float) -> float:
        return now - self.created_at

    @property
    def search_text(self) -> str:
        return (
            f"{self.job_id} {self.state} {self.requester_name} {self.requester} {self.image}"
            f" {self.engine} {self.verifier} {self.publisher}{' step' if self.step else ''}"
        ).lower()

    @classmethod
    def from_record(cls, record: JobRecord, requester_name: str) -> JobRow:
        job, spec = record.job, record.job.spec
        return cls(
            job_id=job.id,
            requester=job.requester,
            requester_name=requester_name,
            state=record.state,
            shards=job.shards,
            concurrency=spec.deal.concurrency,
            verifier=spec.verifier,
            publisher=spec.publisher,
            engine=spec.engine,
            image=spec.image or "",
            step=spec.step,
            created_at=job.created_at,
            updated_at=record.updated_at,
            reason=record.reason or "",
            executions=len(record.executions),
        )


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """The cluster at a glance. Sums are over the nodes that answered, ``None`` if none did.

    ``jobs_*`` are the nodes' requester counters: ``open`` now, ``completed`` and
    ``failed`` since each node started."""

    nodes: int
    up: int
    unreachable: int
    down: int
    jobs_open: int | None = None
    jobs_completed: int | None = None
    jobs_failed: int | None = None
    running_shards: int | None = None
    cpu_percent: float | None = None  # node processes, summed, in % of one core
    rss_bytes: int | None = None
    containers: int | None = None

    @classmethod
    def of(cls, rows: Sequence[NodeRow]) -> ClusterSummary:
        up = [r for r in rows if r.status is NodeStatus.UP]

        def total(values: Iterable[float | int | None]) -> Any:
            known = [v for v in values if v is not None]
            return sum(known) if known else None

        return cls(
            nodes=len(rows),
            up=len(up),
            unreachable=sum(1 for r in rows if r.status is NodeStatus.UNREACHABLE),
            down=sum(1 for r in rows if r.status is NodeStatus.DOWN),
            jobs_open=total(r.open_jobs for r in up),
            jobs_completed=total(r.completed for r in up),
            jobs_failed=total(r.failed for r in up),
            running_shards=total(r.running for r in up),
            cpu_percent=total(r.cpu_percent for r in up),
            rss_bytes=total(r.rss_bytes for r in up),
            containers=total(r.containers for r in up),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ClusterSnapshot:
    """Everything one round learned. ``jobs`` are every job known from the requesters,
    newest first (``jobs_fetched`` is False until a jobs list has come back)."""

    at: float  # wall clock at the end of the round
    nodes: tuple[NodeRow, ...]
    summary: ClusterSummary
    jobs: tuple[JobRow, ...] = ()
    jobs_fetched: bool = False
    cluster_found: bool = True  # False: no cluster.json in the state directory
    state_dir: Path | None = None
    round_ms: float = 0.0

    def node(self, peer_id: str) -> NodeRow | None:
        return next((n for n in self.nodes if n.peer_id == peer_id), None)


@dataclass(frozen=True, slots=True)
class SourceStatistics:
    """The poller's own figures."""

    rounds: int
    requests: int
    failures: int  # requests that got no usable answer
    in_flight: int
    targets: int
    last_round_ms: float | None
    max_round_ms: float | None


class _Unanswered(Exception):
    """A request got no usable answer; the text says why."""


@dataclass
class _NodeState:
    """What the source remembers of one node between rounds."""

    cpu: deque[float | None]
    latency: deque[float | None]
    last_sampled_at: float | None = None
    prev_at: float | None = None
    prev_contended: int | None = None
    prev_stalls: int | None = None
    slots: int | None = None  # from GET /api/v1/node, once per time the node comes up
    jobs_signature: tuple[int, int, int] | None = None
    jobs: tuple[JobRow, ...] = ()

    def forget_session(self) -> None:
        """The node stopped answering: its next answer may be a restarted process."""
        self.prev_at = self.prev_contended = self.prev_stalls = None
        self.slots = None
        self.jobs_signature = None
        self.last_sampled_at = None


def _rate(now_total: int, prev_total: int | None, dt: float | None) -> float | None:
    """Events per second between two readings of a counter; None without two readings,
    or if the counter went back (a restarted node)."""
    if prev_total is None or dt is None or dt <= 0 or now_total < prev_total:
        return None
    return (now_total - prev_total) / dt


def role_of(slots: int | None, open_jobs: int, completed: int, failed: int) -> str | None:
    """``R`` if the node requested jobs since it started, ``C`` if it has slots to run
    them; joined with ``+``. None when neither is known."""
    parts = []
    if open_jobs or completed or failed:
        parts.append("R")
    if slots:
        parts.append("C")
    return "+".join(parts) or None


def node_row(target: NodeTarget, stats: StatsDocument, state: _NodeState) -> NodeRow:
    """A row from one ``GET /api/v1/stats`` document, updating ``state`` (histories and
    the previous counters)."""
    process, jobs, total = stats.process, stats.jobs, stats.latency.total
    if stats.sampled_at != state.last_sampled_at:
        state.cpu.append(process.cpu_percent)
        state.last_sampled_at = stats.sampled_at
    p50 = total.p50_ms if total.window else None
    p95 = total.p95_ms if total.window else None
    state.latency.append(p50)

    contended = sum(lock.slow_waits for lock in stats.locks)
    stall_count = stats.stalls.stalls if stats.stalls is not None else None
    dt = stats.at - state.prev_at if state.prev_at is not None else None
    waits_rate = _rate(contended, state.prev_contended, dt)
    stalls_rate = None if stall_count is None else _rate(stall_count, state.prev_stalls, dt)
    state.prev_at, state.prev_contended, state.prev_stalls = stats.at, contended, stall_count
    worst = max((lock.max_wait_ns for lock in stats.locks), default=None)

    return NodeRow(
        peer_id=target.peer_id,
        name=target.name,
        index=target.index,
        api=target.api,
        status=NodeStatus.UP,
        bad_actor=target.bad_actor,
        host=target.host,
        role=role_of(state.slots, jobs.open, jobs.completed, jobs.failed),
        cpu_percent=process.cpu_percent,
        rss_bytes=process.rss_bytes,
        peers=stats.gossip.peers,
        running=jobs.running,
        bids_sent=stats.bids.sent,
        open_jobs=jobs.open,
        completed=jobs.completed,
        failed=jobs.failed,
        lock_waits_per_s=waits_rate,
        worst_wait_ms=None if worst is None else worst / 1e6,
        lock_warn_ms=stats.lock_warn_ms,
        stalls=stall_count,
        stalls_per_s=stalls_rate,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        containers=stats.containers.count,
        cpu_history=tuple(state.cpu),
        latency_history=tuple(state.latency),
        at=stats.at,
    )


def absent_row(target: NodeTarget, status: NodeStatus, error: str, state: _NodeState) -> NodeRow:
    """The row of a node that did not answer: no figures, a gap in its histories."""
    state.cpu.append(None)
    state.latency.append(None)
    state.forget_session()
    return NodeRow(
        peer_id=target.peer_id,
        name=target.name,
        index=target.index,
        api=target.api,
        status=status,
        error=error,
        bad_actor=target.bad_actor,
        host=target.host,
        cpu_history=tuple(state.cpu),
        latency_history=tuple(state.latency),
    )


def merge_jobs(per_node: Iterable[Sequence[JobRow]]) -> tuple[JobRow, ...]:
    """Every job once (a job lists on its requester only), newest first."""
    seen: dict[str, JobRow] = {}
    for rows in per_node:
        for row in rows:
            seen[row.job_id] = row
    return tuple(sorted(seen.values(), key=lambda j: (-j.created_at, j.job_id)))


R = TypeVar("R")


def sort_records(
    records: Iterable[R],
    key: Callable[[R], Any],
    *,
    reverse: bool = False,
    tiebreak: Callable[[R], Any] | None = None,
) -> list[R]:
    """``records`` ordered by ``key``; records whose key is ``None`` come last in either
    direction, and ties keep the ``tiebreak`` order (ascending), so the order is total
    and stable across rounds."""
    items = list(records)
    if tiebreak is not None:
        items.sort(key=tiebreak)
    known = [r for r in items if key(r) is not None]
    unknown = [r for r in items if key(r) is None]
    known.sort(key=key, reverse=reverse)  # sort is stable: ties keep the tiebreak order
    return known + unknown


def matches(text: str, query: str) -> bool:
    """Whether every whitespace-separated word of ``query`` occurs in ``text``
    (case-insensitive). An empty query matches everything."""
    haystack = text.lower()
    return all(word in haystack for word in query.lower().split())


class ClusterSource:
    """Polls a devstack's nodes over HTTP; use as ``async with ClusterSource(...) as s``.

    Give ``state_dir`` (the devstack's, whose ``cluster.json`` is re-read whenever it
    changes, so a restarted node or a new cluster is followed) or fixed ``targets``.
    ``transport`` replaces the network, ``clock`` (wall time of a snapshot) and
    ``timer`` (round durations) the clocks, for tests. Set :attr:`watch_jobs` while
    something shows the jobs list.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        targets: Sequence[NodeTarget] = (),
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT_S,
        history: int = DEFAULT_HISTORY,
        jobs_limit: int = DEFAULT_JOBS_LIMIT,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.state_dir = state_dir
        self.watch_jobs = False
        self._targets: tuple[NodeTarget, ...] = tuple(targets)
        self._cluster_found = state_dir is None
        self._state_mtime: float | None = None
        self._timeout = timeout
        self._history = history
        self._jobs_limit = jobs_limit
        self._transport = transport
        self._clock = clock
        self._timer = timer
        self._semaphore = asyncio.Semaphore(max_concurrency)
        # One client per node API: httpcore's pool scans every pooled connection for each
        # request, so one pool over 50 nodes spent more CPU than everything else together.
        self._clients: dict[str, AsyncNodeClient] = {}
        self._open = False
        self._nodes: dict[str, _NodeState] = {}
        self._rounds = self._requests = self._failures = self._in_flight = 0
        self._last_round_ms: float | None = None
        self._max_round_ms: float | None = None
        self._jobs_fetched = False
        self._jobs_round_at: float | None = None  # timer() at the last round with jobs
        self.snapshot: ClusterSnapshot | None = None

    async def __aenter__(self) -> ClusterSource:
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def _client_for(self, api: str) -> AsyncNodeClient:
        client = self._clients.get(api)
        if client is None:
            client = self._clients[api] = AsyncNodeClient(
                api,
                timeout=self._timeout,
                connect_timeout=min(1.0, self._timeout),
                max_connections=4,
                transport=self._transport,
            )
        return client

    async def _forget_clients(self, apis: set[str]) -> None:
        for api in apis:
            client = self._clients.pop(api, None)
            if client is not None:
                await client.aclose()

    @property
    def targets(self) -> tuple[NodeTarget, ...]:
        return self._targets

    def jobs_age(self) -> float | None:
        """Seconds since the last round that asked for jobs lists (None: never)."""
        return None if self._jobs_round_at is None else self._timer() - self._jobs_round_at

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(
            rounds=self._rounds,
            requests=self._requests,
            failures=self._failures,
            in_flight=self._in_flight,
            targets=len(self._targets),
            last_round_ms=self._last_round_ms,
            max_round_ms=self._max_round_ms,
        )

    # -- one round -------------------------------------------------------------------

    async def poll(self) -> ClusterSnapshot:
        """Ask every node once; the snapshot of what they said (also :attr:`snapshot`)."""
        if not self._open:
            raise RuntimeError("use the ClusterSource in `async with` before polling")
        started = self._timer()
        self._reload_targets()
        targets = self._targets
        rows = await asyncio.gather(*(self._poll_node(t) for t in targets))
        known = {t.peer_id for t in targets}
        for gone in set(self._nodes) - known:
            del self._nodes[gone]
        await self._forget_clients(set(self._clients) - {t.api for t in targets})
        if self.watch_jobs:
            self._jobs_round_at = started
        round_ms = (self._timer() - started) * 1000
        self._rounds += 1
        self._last_round_ms = round_ms
        self._max_round_ms = max(round_ms, self._max_round_ms or 0.0)
        snapshot = ClusterSnapshot(
            at=self._clock(),
            nodes=tuple(rows),
            summary=ClusterSummary.of(rows),
            jobs=merge_jobs(self._nodes[t.peer_id].jobs for t in targets),
            jobs_fetched=self._jobs_fetched,
            cluster_found=self._cluster_found,
            state_dir=self.state_dir,
            round_ms=round_ms,
        )
        self.snapshot = snapshot
        return snapshot

    def reload(self) -> tuple[NodeTarget, ...]:
        """The nodes to poll, ``cluster.json`` re-read first if it changed."""
        self._reload_targets()
        return self._targets

    def _reload_targets(self) -> None:
        """Re-read ``cluster.json`` if it changed (a restart, a new cluster, ``down``)."""
        if self.state_dir is None:
            return
        path = st.state_path(self.state_dir)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            self._targets, self._state_mtime, self._cluster_found = (), None, False
            return
        if mtime == self._state_mtime:
            return
        try:
            cluster = st.load(self.state_dir)
        except st.StateError:
            cluster = None
        if cluster is None:  # vanished or unreadable between stat and read: next round
            self._targets, self._cluster_found = (), False
            return
        self._state_mtime = mtime
        self._cluster_found = True
        self._targets = tuple(NodeTarget.from_entry(e) for e in cluster.nodes)

    def _name_of(self, peer_id: str) -> str:
        for target in self._targets:
            if target.peer_id == peer_id:
                return target.name
        return peer_id[-6:]

    async def _get(self, api: str, call: Call, decoder: msgspec.json.Decoder[T]) -> T:
        """``call`` on ``api``, decoded, within the concurrency bound; raises _Unanswered."""
        client = self._client_for(api)
        async with self._semaphore:
            self._in_flight += 1
            self._requests += 1
            try:
                return await client.fetch(call, decoder)
            except NodeApiError as exc:
                self._failures += 1
                if exc.status is not None:
                    raise _Unanswered(f"{call.path}: HTTP {exc.status}") from None
                raise _Unanswered(exc.message) from None
            finally:
                self._in_flight -= 1

    def _alive(self, target: NodeTarget) -> bool | None:
        if target.pid is None or target.started is None:
            return None
        return st.is_alive(target.pid, target.started)

    async def _poll_node(self, target: NodeTarget) -> NodeRow:
        state = self._nodes.get(target.peer_id)
        if state is None:
            state = self._nodes[target.peer_id] = _NodeState(
                cpu=deque(maxlen=self._history), latency=deque(maxlen=self._history)
            )
        try:
            stats = await self._get(target.api, calls.stats(), _STATS)
        except _Unanswered as exc:
            if self._alive(target) is False:
                return absent_row(target, NodeStatus.DOWN, "its process has exited", state)
            return absent_row(target, NodeStatus.UNREACHABLE, str(exc), state)
        if state.slots is None:
            try:
                info = await self._get(target.api, calls.info(), _INFO)
                state.slots = info.capacity.slots
            except _Unanswered:
                pass  # asked again next round
        row = node_row(target, stats, state)
        if self.watch_jobs:
            await self._poll_jobs(target, state, stats.jobs)
        return row

    async def _poll_jobs(self, target: NodeTarget, state: _NodeState, counters: _Jobs) -> None:
        """Refresh the node's jobs list unless its requester counters say nothing changed
        (no open job, and no job ended since the last list)."""
        signature = (counters.open, counters.completed, counters.failed)
        if state.jobs_signature == signature and not signature[0]:
            return
        try:
            answer = await self._get(
                target.api, calls.list_jobs("requester", self._jobs_limit), _JOBS
            )
        except _Unanswered:
            return  # the old list stays; asked again next round
        state.jobs = tuple(
            JobRow.from_record(record, self._name_of(record.job.requester))
            for record in answer.jobs
        )
        state.jobs_signature = signature
        self._jobs_fetched = True
