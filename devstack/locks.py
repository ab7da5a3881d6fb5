"""``devstack locks [--top K]``: the cluster's most contended locks and worst stalls.

This module owns asking every node for its locks and loop stalls (``GET
/api/v1/stats``, keys ``locks`` and ``stalls``: :func:`collect`) and printing the
merge as tables (:func:`format_contention`). How the documents merge across nodes
(one row per lock over every node, counts summed, maxima and p99 the worst node's)
is :mod:`profiles.contention`'s, shared with the TUI.
"""

from __future__ import annotations

import argparse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack import state as st
from devstack.client import NodeClient
from devstack.state import ClusterState, NodeEntry
from node.argtypes import positive
from profiles.contention import ClusterContention, merge
from profiles.contention import since as since  # callers of collect() take differences

DEFAULT_TOP = 10


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
