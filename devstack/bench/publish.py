"""``devstack bench publish``: how long verification and publication take, and how fast
a published result moves between nodes.

Submits ``--jobs`` docker jobs (busybox writing a small deterministic output, the
deterministic verifier, ``--concurrency`` runs of each) at ``--rate`` per second to
random requesters and waits for every one to end. From each completed job's
requester events, per shard: the verification latency (from the last ``proposed``
or ``compute_error`` before the first verdict to that verdict, ``results_accepted``
or ``results_rejected``) and the publication latency (from ``publishing``, said right
before the go-ahead to publish, to the last ``published``). Then one job
(concurrency 1) writes ``--size-mb`` MiB of random bytes to /outputs, and a node
that does not hold the result fetches it by CID over bitswap from the nodes that
published it and streams it back to us as a tar: MiB/s end to end, the bytes the
node's bitswap brought in (its ``content`` statistics), and the file's size checked.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import jobs
from devstack import state as st
from devstack.bench.harness import (
    MIB,
    BenchCluster,
    BenchError,
    bench_cluster,
    report,
    say,
    settle,
)
from devstack.bench.workload import requester_events, submit_all, wait_all
from devstack.client import NodeClient
from node.models import Deal, JobSpec
from profiles.quantiles import percentile

IMAGE = "busybox"
#: A small output every run of a job writes alike, so the deterministic verifier agrees.
SMALL_COMMAND = ["sh", "-c", "echo hello; seq 1 1000 > /outputs/n"]
#: Where the transfer job's file lands in its results tree.
BIG_FILE = Path("outputs") / "big"
TRANSFER_TIMEOUT_S = 600.0
FAILURES_SHOWN = 5

ANSWERS = frozenset({"proposed", "compute_error"})
VERDICTS = frozenset({"results_accepted", "results_rejected"})


# -- figures from a job's events ----------------------------------------------------


@dataclass(frozen=True)
class ShardLatency:
    """One shard's verification and publication latencies (ms); None when it had none."""

    shard: int
    verify_ms: float | None
    publish_ms: float | None


def _verify_ms(events: Sequence[dict[str, Any]]) -> float | None:
    """From the last answer (proposed, compute_error) before the first verdict to it."""
    last_answer = None
    for event in events:
        if event["kind"] in ANSWERS:
            last_answer = event["at"]
        elif event["kind"] in VERDICTS:
            return None if last_answer is None else (event["at"] - last_answer) * 1000.0
    return None


def _publish_ms(events: Sequence[dict[str, Any]]) -> float | None:
    """From the (last) ``publishing`` to the last ``published`` after it."""
    publishing = [e["at"] for e in events if e["kind"] == "publishing"]
    if not publishing:
        return None
    published = [e["at"] for e in events if e["kind"] == "published" and e["at"] >= publishing[-1]]
    return (max(published) - publishing[-1]) * 1000.0 if published else None


def shard_latencies(events: Sequence[dict[str, Any]], requester: str) -> list[ShardLatency]:
    """Each shard's verification and publication latency from a job's events (as the
    requester's describe lists them), in shard order."""
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for event in requester_events(events, requester):
        if event["shard"] is not None:
            by_shard.setdefault(event["shard"], []).append(event)
    return [
        ShardLatency(shard, _verify_ms(shard_events), _publish_ms(shard_events))
        for shard, shard_events in sorted(by_shard.items())
    ]


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``p50``, ``p99`` and ``max`` of ``values`` (None of them when empty), rounded."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


def latency_figures(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Jobs completed and failed (the first reasons), and the spread of both latencies
    over every shard of the completed jobs."""
    completed = [a for a in answers if a["job"]["state"] == "completed"]
    failed = [a for a in answers if a["job"]["state"] != "completed"]
    shards = [s for a in completed for s in shard_latencies(a["events"], a["requester"])]
    return {
        "completed": len(completed),
        "failed": len(failed),
        "failures": [
            f"{a['job']['job']['id']} {a['job']['state']}: {a['job']['reason']}"
            for a in failed[:FAILURES_SHOWN]
        ],
        "verification_ms": spread([s.verify_ms for s in shards if s.verify_ms is not None]),
        "publication_ms": spread([s.publish_ms for s in shards if s.publish_ms is not None]),
    }


# -- the transfer of one big result ---------------------------------------------------


def big_spec(size_mib: int) -> JobSpec:
    """One run writing ``size_mib`` MiB of random bytes to /outputs/big."""
    command = f"head -c {size_mib * (1 << 20)} /dev/urandom > /{BIG_FILE}"
    return JobSpec(image=IMAGE, command=["sh", "-c", command])


def measure_transfer(cluster: BenchCluster, size_mib: int) -> dict[str, Any]:
    """Run the big job, then time its result's fetch through a node that lacks it."""
    live = st.live_nodes(cluster.state)
    requester = live[0]
    say(f"writing a {size_mib} MiB result on the cluster (job submitted to {requester.name})")
    with NodeClient(requester.api) as client:
        job_id = client.submit(big_spec(size_mib))["id"]
    answer = jobs.wait(requester.api, job_id, TRANSFER_TIMEOUT_S)
    record = answer["job"]
    if record["state"] != "completed":
        raise BenchError(
            f"the {size_mib} MiB job {job_id} ended {record['state']}: {record['reason']}"
        )
    shard = answer["shards"][0]
    cid, providers = shard["cid"], shard["providers"]
    others = [n for n in live if n.peer_id not in providers]
    if not others:
        raise BenchError("every node holds the result: the transfer needs a node that does not")
    via = others[0]
    size = size_mib * (1 << 20)
    say(f"{via.name} fetches {cid} from {len(providers)} provider(s)")
    with NodeClient(via.api) as client, tempfile.TemporaryDirectory(prefix="bench-pub-") as tmp:
        before = client.info()["content"]
        start = time.perf_counter()
        client.fetch_content(cid, Path(tmp) / "result", providers=providers, timeout=300.0)
        seconds = time.perf_counter() - start
        after = client.info()["content"]
        got = (Path(tmp) / "result" / BIG_FILE).stat().st_size
    if got != size:
        raise BenchError(f"the fetched {BIG_FILE} has {got} bytes, the job wrote {size}")
    fetched = after["bytes_fetched"] - before["bytes_fetched"]
    return {
        "size_mib": size_mib,
        "job_id": job_id,
        "cid": cid,
        "providers": len(providers),
        "via": via.name,
        "seconds": round(seconds, 3),
        "mib_per_s": round(size / MIB / seconds, 1),
        "node_bytes_fetched": fetched,
        "node_blocks_fetched": after["blocks_fetched"] - before["blocks_fetched"],
        "node_fetched_mib_per_s": round(fetched / MIB / seconds, 1),
        "size_checked": True,
    }


# -- the bench ------------------------------------------------------------------------


def _text(r: dict[str, Any]) -> str:
    def cells(s: dict[str, Any]) -> str:
        return f"{s['n']:>6} {s['p50']!s:>9} {s['p99']!s:>9} {s['max']!s:>9}"

    lines = [
        f"{r['jobs']} docker jobs (c={r['concurrency']}, deterministic verifier) on"
        f" {r['nodes']} nodes at {r['rate']:g}/s: {r['completed']} completed,"
        f" {r['failed']} failed",
        *(f"  FAILED: {reason}" for reason in r["failures"]),
        f"{'per shard, ms':<34} {'n':>6} {'p50':>9} {'p99':>9} {'max':>9}",
        f"{'verification (answer->verdict)':<34} {cells(r['verification_ms'])}",
        f"{'publication (go-ahead->published)':<34} {cells(r['publication_ms'])}",
    ]
    t = r["transfer"]
    if t is not None:
        lines += [
            "",
            f"transfer of a {t['size_mib']} MiB result ({t['cid']}), fetched by {t['via']}"
            f" from {t['providers']} provider(s) over bitswap and streamed back as a tar:",
            f"  {t['seconds']:g} s, {t['mib_per_s']:g} MiB/s end to end; the node's bitswap"
            f" brought in {t['node_bytes_fetched'] / MIB:.1f} MiB in {t['node_blocks_fetched']}"
            f" blocks ({t['node_fetched_mib_per_s']:g} MiB/s over the same time); size checked",
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``devstack bench publish``."""
    if args.concurrency > args.nodes and not args.reuse:
        raise BenchError(f"--concurrency {args.concurrency} needs at least that many --nodes")
    load = os.getloadavg()[0]
    spec = JobSpec(
        image=IMAGE,
        command=SMALL_COMMAND,
        verifier="deterministic",
        publisher="ipfs",
        deal=Deal(concurrency=args.concurrency),
    )
    with bench_cluster(
        args.nodes, args.state_dir if args.reuse else None, hosts=args.hosts
    ) as cluster:
        if cluster.temporary:
            settle(args.settle)
        say(
            f"submitting {args.jobs} docker jobs at {args.rate:g}/s, concurrency {args.concurrency}"
        )
        answers = wait_all(submit_all(cluster, args.jobs, spec, args.rate))
        figures = latency_figures(answers)
        transfer = measure_transfer(cluster, args.size_mb) if args.size_mb else None
        nodes = len(cluster.state.nodes)
    result = {
        "bench": "publish",
        "nodes": nodes,
        "jobs": args.jobs,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "command": SMALL_COMMAND,
        **figures,
        "transfer": transfer,
        **cluster.describe(),
    }
    report(result, args.json, _text, load)
    return 0
