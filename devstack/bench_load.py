"""``devstack bench load``: a burst of jobs, and where the nodes waited while it ran.

Submits ``--jobs`` jobs (noop by default, so the nodes and not Docker are what is
measured) at ``--rate`` per second to random requesters and waits for every one
to end. Reported: jobs completed and failed, the rate the cluster sustained, job
latency (created to ended, by the requester's clock), the CPU the node processes
burned, and what the load did to the nodes' locks and event loops: the cluster's
lock and stall figures (``devstack locks``) before the burst subtracted from
after it.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from devstack import locks
from devstack.bench import (
    BenchCluster,
    add_cluster_args,
    bench_cluster,
    cpu_seconds,
    report,
    say,
    settle,
)
from devstack.bench_bids import noop_spec, submit_all, wait_all
from node.argtypes import positive
from profiles.quantiles import percentile


def _latency_ms(answers: list[dict[str, Any]]) -> dict[str, float | None]:
    took = [
        (e["at"] - a["job"]["job"]["created_at"]) * 1000
        for a in answers
        for e in a["events"]
        if e["node"] == a["requester"] and e["kind"] in ("completed", "error", "cancelled")
    ]
    return {
        f"latency_{name}_ms": round(percentile(took, q), 1) if took else None
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99))
    } | {"latency_max_ms": round(max(took), 1) if took else None}


def _lock_rows(found: locks.ClusterContention, top: int) -> list[dict[str, Any]]:
    return [
        {
            "lock": m.name,
            "contended": m.contended,
            "acquisitions": m.acquisitions,
            "wait_ms": round(m.total_wait_ns / 1e6, 1),
            "max_wait_ms": round(m.max_wait_ns / 1e6, 1),
            "max_hold_ms": round(m.max_hold_ns / 1e6, 1),
            "top_waiter": m.waiters.most_common(1)[0][0] if m.waiters else None,
        }
        for m in found.locks[:top]
        if m.contended
    ]


def measure_load(
    cluster: BenchCluster, jobs: int, spec: dict[str, Any], rate: float, top: int
) -> tuple[dict[str, Any], locks.ClusterContention]:
    """Run the burst; its figures, and the cluster's contention during it."""
    procs = cluster.processes()
    before = locks.collect(cluster.state, [])
    cpu_before, start = cpu_seconds(procs), time.monotonic()
    say(f"submitting {jobs} {spec['engine']} jobs at {rate:g}/s")
    submitted = submit_all(cluster, jobs, spec, rate)
    submit_s = time.monotonic() - start
    answers = wait_all(submitted)
    wall = time.monotonic() - start
    cpu = sum(cpu_seconds(procs)) - sum(cpu_before)
    during = locks.since(locks.collect(cluster.state, []), before)
    states = [a["job"]["state"] for a in answers]
    stalls = during.stalls
    result = {
        "jobs": jobs,
        "completed": states.count("completed"),
        "failed": len(states) - states.count("completed"),
        "submit_rate": round(jobs / submit_s, 2),
        "throughput_jobs_per_s": round(jobs / wall, 2),
        "wall_s": round(wall, 1),
        **_latency_ms(answers),
        "node_cpu_s": round(cpu, 1),
        "node_cpu_s_per_job": round(cpu / jobs, 3),
        "lock_contended": sum(m.contended for m in during.locks),
        "lock_wait_ms": round(sum(m.total_wait_ns for m in during.locks) / 1e6, 1),
        "locks": _lock_rows(during, top),
        "loop_steps": stalls.steps,
        "stalls": stalls.stalls,
        "stall_ms": round(stalls.stall_ms_total, 1),
        "stall_cpu_ms": round(stalls.stall_cpu_ms_total, 1),
        "cpu_stalls": stalls.cpu_stalls,
        "sched_delay_mean_ms": round(stalls.sched_delay_mean_ms, 3),
        "stalls_by_task": {
            t.name: {"stalls": t.stalls, "ms": round(t.total_ms, 1), "cpu_ms": round(t.cpu_ms, 1)}
            for t in sorted(stalls.tasks.values(), key=lambda t: -t.total_ms)[:top]
        },
    }
    return result, during


def bench_load(args: argparse.Namespace) -> int:
    """``devstack bench load``."""
    load = os.getloadavg()[0]
    if args.engine == "docker":
        spec: dict[str, Any] = {"engine": "docker", "image": args.image, "command": ["echo", "hi"]}
    else:
        spec = noop_spec(1)
    with bench_cluster(args.nodes, args.state_dir if args.reuse else None) as cluster:
        if cluster.temporary:
            settle(args.settle)
        result, during = measure_load(cluster, args.jobs, spec, args.rate, args.top)
        nodes = len(cluster.state.nodes)
    result = {
        "bench": "load",
        "nodes": nodes,
        "engine": args.engine,
        "rate": args.rate,
        **result,
        **cluster.describe(),
    }

    def text(r: dict[str, Any]) -> str:
        lines = [
            f"{r['jobs']} {r['engine']} jobs on {r['nodes']} nodes at {r['rate']:g}/s"
            f" (submitted at {r['submit_rate']:g}/s): {r['completed']} completed,"
            f" {r['failed']} failed, {r['throughput_jobs_per_s']:g} jobs/s over {r['wall_s']:g}s",
            f"latency p50 / p95 / p99 / max (ms): {r['latency_p50_ms']} / {r['latency_p95_ms']}"
            f" / {r['latency_p99_ms']} / {r['latency_max_ms']}",
            f"node CPU: {r['node_cpu_s']:g} s in all, {r['node_cpu_s_per_job']:g} s per job",
            "",
            "during the burst:",
            locks.format_contention(during, args.top),
        ]
        return "\n".join(lines)

    report(result, args.json, text, load)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "load",
        help="a burst of jobs: throughput, latency, and lock contention and stalls meanwhile",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_cluster_args(p, nodes=10, settle=20.0)
    p.add_argument("--jobs", type=positive(int), default=500, help="jobs (default 500)")
    p.add_argument("--rate", type=positive(float), default=10.0, help="jobs per second (10)")
    p.add_argument("--engine", choices=["noop", "docker"], default="noop")
    p.add_argument("--image", default="busybox:latest", help="image of docker jobs")
    p.add_argument("--top", type=positive(int), default=8, help="rows per table (default 8)")
    p.set_defaults(bench_func=bench_load)
