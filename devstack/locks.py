"""``devstack locks [--top K]``: the cluster's most contended locks and worst stalls.

Each node reports its own instrumented locks and loop stalls (``GET /api/v1/stats``,
keys ``locks`` and ``stalls``). Here they are merged across nodes: a lock is keyed
by its name and creation site, so the same lock in 50 processes is one row whose
counts are summed; maxima are the worst node's, and so is the p99 (a p99 of p99s
would mean nothing). Stalls are merged per task name.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from devstack import state as st
from devstack.client import NodeClient
from devstack.state import ClusterState, NodeEntry
from node.argtypes import positive

DEFAULT_TOP = 10


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
    """Merge per-node ``/api/v1/stats`` documents, given as (node name, document).

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


def collect(cluster: ClusterState, refs: list[str]) -> ClusterContention:
    """Ask the nodes ``refs`` name (none: every node) at once, and merge.

    Raises StateError for a ref that names no node, NodeApiError if a node cannot be
    reached.
    """
    nodes = [st.find_node(cluster, r) for r in refs] if refs else list(cluster.nodes)

    def one(node: NodeEntry) -> tuple[str, dict[str, Any]]:
        with NodeClient(node.api) as client:
            return node.name, client.stats()

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        return merge(pool.map(one, nodes))


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def top_site(counter: Counter[str]) -> str:
    """The most frequent call site of ``counter`` as ``site (count)``; ``-`` if none."""
    if not counter:
        return "-"
    site, count = counter.most_common(1)[0]
    return f"{site} ({count})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def format_contention(found: ClusterContention, top: int = DEFAULT_TOP) -> str:
    """The top ``top`` locks by total wait and tasks by stall time, as tables."""
    s = found.stalls
    lines = [f"locks (merged over {s.nodes} node(s); warn past {found.lock_warn_ms:g} ms):"]
    contended = [m for m in found.locks if m.contended][:top]
    if contended:
        rows = [
            [
                m.name,
                f"{m.contended_nodes}/{m.nodes}",
                str(m.acquisitions),
                str(m.contended),
                _ms(m.total_wait_ns),
                _ms(m.mean_wait_ns),
                _ms(m.worst_p99_wait_ns),
                _ms(m.max_wait_ns),
                _ms(m.max_hold_ns),
                top_site(m.waiters),
                top_site(m.holders),
            ]
            for m in contended
        ]
        header = "LOCK NODES ACQUIRED CONTENDED WAIT_MS MEAN_MS P99_MS MAX_MS MAX_HOLD_MS"
        lines += _table([*header.split(), "TOP WAITER", "TOP HOLDER"], rows)
    else:
        acquired = sum(m.acquisitions for m in found.locks)
        lines.append(f"  no contention ({len(found.locks)} locks, {acquired} acquisitions)")
    held = sorted(found.locks, key=lambda m: -m.max_hold_ns)[:3]
    lines.append("  longest holds: " + ", ".join(f"{m.name} {_ms(m.max_hold_ns)} ms" for m in held))
    lines.append("")
    lines.append(
        f"loop stalls (steps over {s.threshold_ms:g} ms): {s.stalls} in {s.steps} steps,"
        f" {s.stall_ms_total:.0f} ms in all, {s.stall_cpu_ms_total:.0f} ms of it on the CPU"
        f" ({s.cpu_stalls} stalls past the threshold on CPU alone); scheduling delay mean"
        f" {s.sched_delay_mean_ms:.2f} ms, worst node p99 {s.worst_sched_p99_ms:.1f} ms,"
        f" max {s.sched_delay_max_ms:.1f} ms"
    )
    tasks = sorted(s.tasks.values(), key=lambda t: -t.total_ms)[:top]
    if tasks:
        rows = [
            [
                t.name,
                str(t.nodes),
                str(t.stalls),
                f"{t.total_ms:.0f}",
                f"{t.cpu_ms:.0f}",
                f"{t.max_ms:.1f}",
            ]
            for t in tasks
        ]
        lines += _table(["TASK", "NODES", "STALLS", "TOTAL_MS", "CPU_MS", "MAX_MS"], rows)
    if s.worst_task is not None:
        lines.append(f"worst stall: {s.worst_stall_ms:.1f} ms in {s.worst_task} on {s.worst_node}")
        lines += [f"    {frame}" for frame in s.worst_stack[-8:]]
    return "\n".join(lines)


def add_locks_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("nodes", nargs="*", help="nodes by index, node-N or peer id part (default all)")
    p.add_argument(
        "--seconds",
        type=positive(float),
        default=None,
        help="only what happens over this many seconds from now (default: since each node started)",
    )
    p.add_argument(
        "--top",
        type=positive(int),
        default=DEFAULT_TOP,
        help=f"rows per table (default {DEFAULT_TOP})",
    )
