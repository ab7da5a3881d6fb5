"""Merging the nodes' lock and stall reports into one picture of the cluster.

Each node reports its own instrumented locks and event-loop stalls
(``GET /api/v1/debug/locks``, and the ``locks`` and ``stalls`` keys of
``GET /api/v1/stats``; :mod:`profiles.report` builds that document). This module
owns how those documents add up across nodes, for ``devstack locks`` and the TUI
alike: a lock is keyed by its name and creation site, so the same lock in 50
processes is one :class:`MergedLock` whose counts are summed; maxima are the worst
node's, and so is the p99 (a p99 of p99s would mean nothing). Stalls are merged per
task name (:class:`MergedStalls`, :class:`MergedTask`). :func:`merge` makes a
:class:`ClusterContention` of one round of documents, :func:`since` the difference
between two rounds.

Pure functions over the documents: no I/O, no trio, nothing of the node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class MergedLock:
    name: str
    created_at: str
    nodes: int = 0
    contended_nodes: int = 0
    acquisitions: int = 0
    contended: int = 0
    total_wait_ns: int = 0
    max_wait_ns: int = 0
    worst_p99_wait_ns: int = 0
    max_hold_ns: int = 0
    waiters: Counter[str] = field(default_factory=Counter)
    holders: Counter[str] = field(default_factory=Counter)

    @property
    def mean_wait_ns(self) -> float:
        return self.total_wait_ns / self.contended if self.contended else 0.0

    def add(self, lock: dict[str, Any]) -> None:
        self.nodes += 1
        self.contended_nodes += lock["contended"] > 0
        self.acquisitions += lock["acquisitions"]
        self.contended += lock["contended"]
        self.total_wait_ns += lock["total_wait_ns"]
        self.max_wait_ns = max(self.max_wait_ns, lock["max_wait_ns"])
        self.worst_p99_wait_ns = max(self.worst_p99_wait_ns, lock["p99_wait_ns"])
        self.max_hold_ns = max(self.max_hold_ns, lock["max_hold_ns"])
        self.waiters.update(dict(map(tuple, lock["top_waiters"])))
        self.holders.update(dict(map(tuple, lock["top_holders"])))


@dataclass
class MergedTask:
    name: str
    nodes: int = 0
    stalls: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    cpu_ms: float = 0.0


@dataclass
class MergedStalls:
    nodes: int = 0
    threshold_ms: float = 0.0
    steps: int = 0
    stalls: int = 0
    cpu_stalls: int = 0
    stall_ms_total: float = 0.0
    stall_cpu_ms_total: float = 0.0
    worst_stall_ms: float = 0.0
    worst_node: str = ""
    worst_task: str | None = None
    worst_stack: tuple[str, ...] = ()
    sched_delay_count: int = 0
    sched_delay_sum_ms: float = 0.0
    worst_sched_p99_ms: float = 0.0
    sched_delay_max_ms: float = 0.0
    tasks: dict[str, MergedTask] = field(default_factory=dict)

    @property
    def sched_delay_mean_ms(self) -> float:
        return self.sched_delay_sum_ms / self.sched_delay_count if self.sched_delay_count else 0.0

    def add(self, node: str, stalls: dict[str, Any]) -> None:
        self.nodes += 1
        self.threshold_ms = stalls["threshold_ms"]
        self.steps += stalls["steps"]
        self.stalls += stalls["stalls"]
        self.cpu_stalls += stalls["cpu_stalls"]
        self.stall_ms_total += stalls["stall_ms_total"]
        self.stall_cpu_ms_total += stalls["stall_cpu_ms_total"]
        if stalls["worst_stall_ms"] > self.worst_stall_ms:
            self.worst_stall_ms = stalls["worst_stall_ms"]
            self.worst_node, self.worst_task = node, stalls["worst_task"]
            self.worst_stack = tuple(stalls["worst_stack"])
        self.sched_delay_count += stalls["sched_delay_count"]
        self.sched_delay_sum_ms += stalls["sched_delay_mean_ms"] * stalls["sched_delay_count"]
        self.worst_sched_p99_ms = max(self.worst_sched_p99_ms, stalls["sched_delay_p99_ms"])
        self.sched_delay_max_ms = max(self.sched_delay_max_ms, stalls["sched_delay_max_ms"])
        for task in stalls["per_task"]:
            merged = self.tasks.setdefault(task["name"], MergedTask(task["name"]))
            merged.nodes += 1
            merged.stalls += task["stalls"]
            merged.total_ms += task["total_ms"]
            merged.max_ms = max(merged.max_ms, task["max_ms"])
            merged.cpu_ms += task["cpu_ms"]


@dataclass(frozen=True)
class ClusterContention:
    locks: tuple[MergedLock, ...]  # most total wait first
    stalls: MergedStalls
    lock_warn_ms: float


def merge(reports: Iterable[tuple[str, dict[str, Any]]]) -> ClusterContention:
    """Merge per-node ``/api/v1/debug/locks`` (or ``/api/v1/stats``) documents, given
    as (node name, document).

    Raises KeyError/TypeError for a document without the ``locks``/``stalls`` shape.
    """
    locks: dict[tuple[str, str], MergedLock] = {}
    stalls = MergedStalls()
    warn_ms = 0.0
    for node, report in reports:
        warn_ms = report["lock_warn_ms"]
        for lock in report["locks"]:
            key = (lock["name"], lock["created_at"])
            locks.setdefault(key, MergedLock(*key)).add(lock)
        stalls.add(node, report["stalls"])
    ranked = sorted(locks.values(), key=lambda m: (-m.total_wait_ns, -m.contended, m.name))
    return ClusterContention(tuple(ranked), stalls, warn_ms)


def since(after: ClusterContention, before: ClusterContention) -> ClusterContention:
    """What happened between two merges of the same nodes: counts and sums are the
    differences; maxima, p99s and the worst stall stay the ``after`` ones (a node keeps
    no history of its maxima)."""
    earlier = {(m.name, m.created_at): m for m in before.locks}
    locks = []
    for m in after.locks:
        b = earlier.get((m.name, m.created_at))
        if b is not None:
            m = replace(
                m,
                contended_nodes=m.contended_nodes if m.contended > b.contended else 0,
                acquisitions=m.acquisitions - b.acquisitions,
                contended=m.contended - b.contended,
                total_wait_ns=m.total_wait_ns - b.total_wait_ns,
                waiters=m.waiters - b.waiters,
                holders=m.holders - b.holders,
            )
        locks.append(m)
    locks.sort(key=lambda m: (-m.total_wait_ns, -m.contended, m.name))
    s, t = after.stalls, before.stalls
    tasks = {}
    for name, task in s.tasks.items():
        old = t.tasks.get(name)
        if old is None:
            tasks[name] = task
        elif task.stalls > old.stalls:
            tasks[name] = replace(
                task,
                stalls=task.stalls - old.stalls,
                total_ms=task.total_ms - old.total_ms,
                cpu_ms=task.cpu_ms - old.cpu_ms,
            )
    stalls = replace(
        s,
        steps=s.steps - t.steps,
        stalls=s.stalls - t.stalls,
        cpu_stalls=s.cpu_stalls - t.cpu_stalls,
        stall_ms_total=s.stall_ms_total - t.stall_ms_total,
        stall_cpu_ms_total=s.stall_cpu_ms_total - t.stall_cpu_ms_total,
        sched_delay_count=s.sched_delay_count - t.sched_delay_count,
        sched_delay_sum_ms=s.sched_delay_sum_ms - t.sched_delay_sum_ms,
        tasks=tasks,
    )
    return ClusterContention(tuple(locks), stalls, after.lock_warn_ms)
