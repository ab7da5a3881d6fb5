"""``devstack bench bids``: bid traffic per job, measured on a real devstack.

Submits ``--jobs`` noop jobs (so Docker is not the bottleneck) at ``--rate`` per
second to random requesters, waits for every one to end, and reads each job's
story from its requester's event log: the bids it answered (``bid_accepted`` +
``bid_rejected``), when the first bid and the c-th accepted bid came (from
``created``, by the requester's clock), whether it needed a ``rebid``, and which
node ran it. The figures carry the same keys as ``devstack simulate --json``.
Bids that arrived after a job ended are answered "not open" and leave no event;
``bids_sent_total`` (the nodes' own counters) includes them.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any

from devstack.bench.burst import message_figures, read_counters
from devstack.bench.harness import BenchCluster, BenchError, bench_cluster, report, say, settle
from devstack.bench.workload import noop_spec, submit_all, wait_all
from devstack.client import NodeClient
from profiles.quantiles import percentile


def _bids_sent(cluster: BenchCluster) -> int:
    total = 0
    for node in cluster.state.nodes:
        with NodeClient(node.api) as client:
            total += client.info()["compute"]["bids_sent"]
    return total


def job_figures(answer: dict[str, Any]) -> dict[str, Any]:
    """Bids, first-bid and c-th-accepted times (ms), rebid and runner of one job."""
    record = answer["job"]
    created = record["job"]["created_at"]
    concurrency = record["job"]["spec"]["deal"]["concurrency"]
    mine = [e for e in answer["events"] if e["node"] == answer["requester"]]
    answered = [
        e for e in mine if e["kind"] in ("bid_accepted", "bid_rejected") and "peer" in e["detail"]
    ]
    accepted = [e for e in answered if e["kind"] == "bid_accepted"]
    c_th = accepted[concurrency - 1]["at"] if len(accepted) >= concurrency else None
    return {
        "bids": len(answered),
        "first_bid_ms": (answered[0]["at"] - created) * 1000 if answered else None,
        "accepted_ms": (c_th - created) * 1000 if c_th is not None else None,
        "rebid": any(e["kind"] == "rebid" for e in mine),
        "completed": record["state"] == "completed",
        "runners": [e["detail"]["peer"] for e in accepted],
    }


def summarize_bids(
    figures: list[dict[str, Any]], nodes: list[str], concurrency: int
) -> dict[str, Any]:
    bids = [f["bids"] for f in figures]
    first = [f["first_bid_ms"] for f in figures if f["first_bid_ms"] is not None]
    accepted = [f["accepted_ms"] for f in figures if f["accepted_ms"] is not None]
    load = Counter(peer for f in figures for peer in f["runners"])
    per_node = [load.get(n, 0) for n in nodes]
    mean_load = sum(per_node) / len(per_node) if per_node else 0.0

    def pct(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 1) if values else None

    return {
        "jobs": len(figures),
        "concurrency": concurrency,
        "bids_per_job_mean": round(sum(bids) / len(bids), 3) if bids else 0.0,
        "bids_per_job_p99": pct(bids, 99),
        "bids_per_job_max": max(bids, default=0),
        "jobs_short_of_bids_first_round": sum(f["rebid"] for f in figures),
        "jobs_never_completed": sum(not f["completed"] for f in figures),
        "first_bid_p50_ms": pct(first, 50),
        "first_bid_p99_ms": pct(first, 99),
        "accepted_p50_ms": pct(accepted, 50),
        "accepted_p99_ms": pct(accepted, 99),
        "load_max_over_mean": round(max(per_node) / mean_load, 2) if mean_load else None,
    }


def _text(r: dict[str, Any]) -> str:
    rows = [
        (
            "dispatch / bidder / nodes / jobs / c",
            f"{r['dispatch']} / {r['bidder']} / {r['nodes']} / {r['jobs']} / {r['concurrency']}",
        ),
        (
            "bids per job mean / p99 / max",
            f"{r['bids_per_job_mean']} / {r['bids_per_job_p99']} / {r['bids_per_job_max']}",
        ),
        ("bids sent in all (incl. late)", f"{r['bids_sent_total']}"),
        ("jobs short of bids in round 1", f"{r['jobs_short_of_bids_first_round']}"),
        ("jobs never completed", f"{r['jobs_never_completed']}"),
        ("first bid p50 / p99 (ms)", f"{r['first_bid_p50_ms']} / {r['first_bid_p99_ms']}"),
        ("c accepted p50 / p99 (ms)", f"{r['accepted_p50_ms']} / {r['accepted_p99_ms']}"),
        ("load: jobs per node max/mean", f"{r['load_max_over_mean']}"),
        ("messages per job", f"{r['messages_per_job']}"),
        ("  by kind", ", ".join(f"{k} {v:g}" for k, v in r["messages_per_job_by_kind"].items())),
        ("gossip deliveries per job", f"{r['gossip_deliveries_per_job']}"),
    ]
    return "\n".join(f"{k:<32} {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    """``devstack bench bids``."""
    if args.concurrency > args.nodes:
        raise BenchError(f"--concurrency {args.concurrency} needs at least that many --nodes")
    load = os.getloadavg()[0]
    reuse = args.state_dir if args.reuse else None
    with bench_cluster(
        args.nodes, reuse, bidder=args.bidder, dispatch=args.dispatch, hosts=args.hosts
    ) as cluster:
        if cluster.temporary:
            settle(args.settle)  # measure the steady state
        clients = {n.api: NodeClient(n.api) for n in cluster.state.nodes}
        try:
            counters = read_counters(cluster.state, clients)
            before = _bids_sent(cluster)
            say(
                f"submitting {args.jobs} noop jobs at {args.rate:g}/s,"
                f" concurrency {args.concurrency}"
            )
            answers = wait_all(
                submit_all(cluster, args.jobs, noop_spec(args.concurrency), args.rate)
            )
            sent = _bids_sent(cluster) - before
            counted = read_counters(cluster.state, clients).minus(counters)
        finally:
            for client in clients.values():
                client.close()
        nodes = [n.peer_id for n in cluster.state.nodes]
    result = {
        "bench": "bids",
        "bidder": cluster.state.bidder,
        "dispatch": cluster.state.dispatch,
        "nodes": len(nodes),
        "rate": args.rate,
        "settle_seconds": args.settle if cluster.temporary else 0.0,
        **summarize_bids([job_figures(a) for a in answers], nodes, args.concurrency),
        "bids_sent_total": sent,
        **message_figures(counted, args.jobs),
    }
    report(result, args.json, _text, load)
    return 0
