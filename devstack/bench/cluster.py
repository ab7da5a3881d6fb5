"""``devstack bench cluster``: what an N-node devstack costs.

Start N nodes in a temporary state dir; report the time to ready, RSS/USS per node
and the CPU of the idle cluster; take it down.

The time to ready is counted from the call to ``up`` and from the first node's fork;
the idle CPU is measured after ``--settle`` seconds, while start-up chatter dies down.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import psutil

from devstack.bench.harness import (
    MIB,
    BenchCluster,
    bench_cluster,
    format_table,
    report,
    say,
    settle,
    summarize,
)


def cpu_seconds(procs: Sequence[psutil.Process]) -> list[float]:
    """User + system CPU seconds so far of each process."""
    return [sum(p.cpu_times()[:2]) for p in procs]


def measure_cluster(cluster: BenchCluster, *, seconds: float, settle_s: float) -> dict[str, Any]:
    """Idle CPU over ``seconds`` (after ``settle_s``), then memory of every node."""
    procs = cluster.processes()
    settle(settle_s)
    say(f"measuring idle CPU for {seconds:g}s")
    before, start = cpu_seconds(procs), time.monotonic()
    time.sleep(seconds)
    after, wall = cpu_seconds(procs), time.monotonic() - start
    per_node = [100.0 * (a - b) / wall for a, b in zip(after, before, strict=True)]
    memory = [p.memory_full_info() for p in cluster.processes()]
    return {
        "bench": "cluster",
        "nodes": len(procs),
        "dispatch": cluster.state.dispatch,
        "ready_s": round(cluster.ready_s or 0.0, 2),
        "fork_to_ready_s": (
            round(cluster.fork_to_ready_s, 2) if cluster.fork_to_ready_s is not None else None
        ),
        "rss_mib": summarize([m.rss / MIB for m in memory]),
        "uss_mib": summarize([m.uss / MIB for m in memory]),
        "pss_total_mib": round(sum(m.pss for m in memory) / MIB, 1),
        "idle_cpu_percent_of_core": round(sum(per_node), 2),
        "idle_cpu_percent_per_node": summarize(per_node, digits=2),
        "idle_seconds": round(wall, 2),
        "settle_seconds": settle_s,
        **cluster.describe(),
    }


def cluster_text(r: dict[str, Any]) -> str:
    """The cluster result for people."""
    fork = r["fork_to_ready_s"]
    table = format_table(
        f"{r['nodes']}-node devstack: memory per node, MiB",
        [("RSS", r["rss_mib"]), ("USS (private)", r["uss_mib"])],
    )
    return (
        f"ready {r['ready_s']:g}s after `up` was called"
        + (f" ({fork:g}s after the first node was forked)" if fork is not None else "")
        + f"\n{table}\ntotal PSS {r['pss_total_mib']:g} MiB\n"
        f"idle CPU over {r['idle_seconds']:g}s (after {r['settle_seconds']:g}s to settle):"
        f" {r['idle_cpu_percent_of_core']:g}% of one core in all,"
        f" median {r['idle_cpu_percent_per_node']['median']:g}% per node"
    )


def run(args: argparse.Namespace) -> int:
    """``devstack bench cluster``."""
    load = os.getloadavg()[0]
    with bench_cluster(args.nodes, dispatch=args.dispatch, hosts=args.hosts) as cluster:
        result = measure_cluster(cluster, seconds=args.seconds, settle_s=args.settle)
    report(result, args.json, cluster_text, load)
    return 0
