"""``devstack bench partition``: jobs submitted on both sides of a host cut off and healed.

Starts a devstack on simulated hosts (``--hosts``, README: Several hosts) and runs
one reference job of each spec on the quiet cluster. Then it submits ``--jobs``
jobs at ``--rate`` per second, round robin over every node's API: the APIs stay on
the machine's loopback while a host is cut off, so jobs reach requesters on both
sides. ``--cut-after`` seconds into the submissions it cuts ``--host`` off (as
``devstack partition`` does) and heals it ``--partition`` seconds later. Then it
times how long every node takes to see the whole network again, and reads every
job from its requester.

Reported, per side (the job's requester on the cut host or not) and per phase (the
job was submitted before, during or after the partition): jobs completed, error,
cancelled and still open. Also reported: the runs given up on a node across the
cut and run again; the results a node across the cut delivered after the heal and
the requester adopted; and the figures that must be 0: jobs that ended twice,
shards published twice, and completed jobs whose results differ from the
reference.

This module owns the partition bench alone: the cut-and-heal thread and the
per-side tally (small pure functions, unit-tested). The submitter, the reference
runs and the reading of jobs are the chaos bench's (:mod:`devstack.bench.chaos`).
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from devstack import netns
from devstack.bench.chaos import (
    REASONS_SHOWN,
    SPECS,
    Ledger,
    Outcome,
    ended_at,
    job_events,
    job_spec,
    left_lines,
    leftover_containers,
    p50_p95,
    read_all,
    reference_runs,
    run_and_report,
    submit_paced,
    tally,
)
from devstack.bench.harness import BenchCluster, BenchError, say
from devstack.client import NodeApiError, NodeClient
from devstack.jobs import TERMINAL
from devstack.state import NodeEntry
from node.models import Deal, JobSpec

#: How long after the heal every node may take to see the whole network again.
CONVERGE_TIMEOUT_S = 180.0
PHASES = ("before", "during", "after")
SIDES = ("cut", "rest")


# -- pure parts -------------------------------------------------------------------------


def phase(at: float, cut_at: float | None, healed_at: float | None) -> str:
    """When a job submitted at wall time ``at`` was submitted: ``before`` the cut,
    ``during`` it, or ``after`` the heal (no cut yet: before; no heal yet: during)."""
    if cut_at is None or at < cut_at:
        return "before"
    if healed_at is None or at < healed_at:
        return "during"
    return "after"


def _own_events(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e for e in answer.get("events", []) if not e["detail"].get("role")]


def ended(answer: Mapping[str, Any] | None) -> bool:
    """Whether the job was read and had ended."""
    return answer is not None and answer["job"]["state"] in TERMINAL


def times_ended(answer: Mapping[str, Any]) -> int:
    """How many of the job's own events ended it: events of the whole job (no shard)
    that left it in a terminal state. A job ends once; more is a defect."""
    return sum(
        1
        for e in _own_events(answer)
        if e.get("shard") is None and e["detail"].get("state") in TERMINAL
    )


def shards_published_twice(answer: Mapping[str, Any]) -> int:
    """Shards of the job given two verdicts (``publishing`` twice), or whose result
    one node published twice."""
    verdicts: Counter[int] = Counter()
    published: Counter[tuple[int, str]] = Counter()
    for e in _own_events(answer):
        if e["kind"] == "publishing":
            verdicts[e.get("shard") or 0] += 1
        elif e["kind"] == "published":
            published[(e.get("shard") or 0, e["detail"].get("peer", ""))] += 1
    twice = {shard for shard, n in verdicts.items() if n > 1}
    twice |= {shard for (shard, _), n in published.items() if n > 1}
    return len(twice)


def across(answer: Mapping[str, Any], cut_peers: frozenset[str], requester_cut: bool) -> set[str]:
    """The peers of the job's executions on the other side of the cut from its
    requester (on the cut host when the requester is not, and the other way round)."""
    nodes = {e["node"] for e in answer["job"].get("executions", [])}
    return {n for n in nodes if (n in cut_peers) != requester_cut}


def reruns_across(answer: Mapping[str, Any], cut_peers: frozenset[str], requester_cut: bool) -> int:
    """The job's runs given up on a node across the cut and run again (``retry``)."""
    far = across(answer, cut_peers, requester_cut)
    return sum(1 for e in job_events(answer, "retry") if e["detail"].get("peer") in far)


def adopted_after(
    answer: Mapping[str, Any], cut_peers: frozenset[str], requester_cut: bool, healed_at: float
) -> int:
    """The job's results that a node across the cut was given before the heal,
    proposed after it, and published: runs the partition held up, adopted."""

    def peers(kind: str, after: bool) -> set[str]:
        return {
            e["detail"].get("peer", "")
            for e in job_events(answer, kind)
            if (e["at"] >= healed_at) == after
        }

    far = across(answer, cut_peers, requester_cut)
    held_up = peers("bid_accepted", after=False) & peers("proposed", after=True)
    return len(held_up & peers("published", after=True) & far)


@dataclass(frozen=True)
class Job:
    """One accepted job as read at the end, placed by its requester's side and the
    phase of its submission."""

    side: str  # "cut": its requester sits on the cut host; "rest": elsewhere
    phase: str
    answer: Mapping[str, Any] | None


def by_side_and_phase(jobs: Sequence[Job]) -> dict[str, dict[str, dict[str, int]]]:
    """``{side: {phase: {completed, error, cancelled, open}}}`` (``open``: not ended,
    or not readable)."""
    table = {s: {p: dict.fromkeys(("completed", "error", "cancelled", "open"), 0) for p in PHASES}
             for s in SIDES}  # fmt: skip
    for job in jobs:
        state = job.answer["job"]["state"] if job.answer is not None else "open"
        table[job.side][job.phase][state if state in TERMINAL else "open"] += 1
    return table


def latency_by_phase(jobs: Sequence[Job]) -> dict[str, dict[str, Any]]:
    """Per phase: ``n``, ``p50`` and ``p95`` of the completed jobs' time from their
    creation to their end (s), by their requester's clock."""
    took: dict[str, list[float]] = {p: [] for p in PHASES}
    for job in jobs:
        if job.answer is None or job.answer["job"]["state"] != "completed":
            continue
        end = ended_at(job.answer)
        if end is not None:
            took[job.phase].append(end - job.answer["job"]["job"]["created_at"])
    return {p: p50_p95(values) for p, values in took.items()}


# -- the cut ----------------------------------------------------------------------------


class Cut:
    """Cuts ``host`` off ``after`` seconds from :meth:`start` and heals it ``hold``
    seconds later, in a thread of its own; just before the heal it reads each of
    ``nodes``' view of the network's size. :meth:`finish` waits for the heal; once it
    returns the host is healed whatever happened (a failing bench heals at once)."""

    def __init__(
        self,
        network: netns.Network,
        host: netns.HostNet,
        nodes: Sequence[NodeEntry],
        *,
        after: float,
        hold: float,
    ) -> None:
        self.network, self.host, self.nodes = network, host, nodes
        self.after, self.hold = after, hold
        self.cut_at: float | None = None  # wall clock, as the nodes' events
        self.healed_at: float | None = None
        self.sizes_before_heal: list[int | None] = []
        self.error: BaseException | None = None
        self.abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="partition", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, *, at_once: bool = False) -> None:
        if at_once:
            self.abort.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            if self.abort.wait(self.after):
                return
            netns.partition(self.network, str(self.host.index))
            self.cut_at = time.time()
            say(f"{self.host.name} cut off")
            if not self.abort.wait(self.hold):
                self.sizes_before_heal = network_sizes(self.nodes)
        except BaseException as exc:  # re-raised in the bench's thread
            self.error = exc
        finally:
            if self.cut_at is not None:
                try:
                    netns.heal(self.network, str(self.host.index))
                    self.healed_at = time.time()
                    say(f"{self.host.name} healed")
                except BaseException as exc:
                    self.error = self.error or exc


def network_sizes(nodes: Sequence[NodeEntry]) -> list[int | None]:
    """Each node's view of the network's size (None: it did not answer)."""

    def size(api: str) -> int | None:
        with contextlib.suppress(NodeApiError), NodeClient(api) as client:
            return int(client.health()["network_size"])
        return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(size, [n.api for n in nodes]))


def wait_converged(nodes: Sequence[NodeEntry], timeout: float) -> float | None:
    """Seconds until every node sees all of ``nodes``; None if not within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(size == len(nodes) for size in network_sizes(nodes)):
            return time.monotonic() - start
        time.sleep(0.5)
    return None


# -- the bench --------------------------------------------------------------------------


def spec_of(args: argparse.Namespace, index: int) -> JobSpec:
    spec = job_spec(args.engine, index, args.image)
    return msgspec.structs.replace(spec, deal=Deal(concurrency=args.concurrency))


def check_args(args: argparse.Namespace, network: netns.Network | None) -> netns.HostNet:
    """The host to cut; BenchError naming the option that cannot work."""
    if network is None or len(network.hosts) < 2:
        raise BenchError("partition needs a devstack on 2 or more hosts: pass --hosts 2 or more")
    submitting_s = (args.jobs - 1) / args.rate
    if args.cut_after + args.partition >= submitting_s:
        raise BenchError(
            f"--cut-after {args.cut_after:g} + --partition {args.partition:g} must end before"
            f" the last submission, {submitting_s:g}s in (--jobs {args.jobs} at --rate"
            f" {args.rate:g}): raise --jobs or lower them"
        )
    try:
        return network.host(args.host if args.host is not None else str(len(network.hosts) - 1))
    except netns.NetworkError as exc:
        raise BenchError(f"--host: {exc}") from None


def run_partition(cluster: BenchCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Reference runs, the submissions across the cut and heal, every job's outcome."""
    network = netns.load(cluster.state_dir)
    host = check_args(args, network)
    assert network is not None  # check_args said so
    nodes = sorted(cluster.state.nodes, key=lambda n: n.index)
    cut_nodes = {n.index for n in nodes if n.host == host.index}
    cut_peers = frozenset(n.peer_id for n in nodes if n.index in cut_nodes)
    if len(cut_nodes) in (0, len(nodes)):
        raise BenchError(f"{host.name} must hold some of the nodes but not all: pick another")
    reference = reference_runs(nodes, args)
    say(
        f"submitting {args.jobs} jobs at {args.rate:g}/s; {host.name} ({len(cut_nodes)} nodes)"
        f" cut off at {args.cut_after:g}s for {args.partition:g}s"
    )
    ledger = Ledger()
    cut = Cut(network, host, nodes, after=args.cut_after, hold=args.partition)
    start = time.monotonic()
    cut.start()
    try:
        submit_paced(ledger, args.jobs, args.rate, lambda i: spec_of(args, i), nodes)
        submitted_s = time.monotonic() - start
        cut.finish()
    except BaseException:
        cut.finish(at_once=True)
        raise
    if cut.error is not None:
        raise BenchError(f"the cut failed: {cut.error}") from cut.error
    if cut.healed_at is None:
        raise BenchError("the host was never cut off: the submissions ended first")
    say("healed; waiting for every node to see the whole network")
    converged_s = wait_converged(nodes, CONVERGE_TIMEOUT_S)
    accepted = sorted(ledger.accepted, key=lambda a: a.index)
    say(f"waiting up to {args.settle:g}s after the last submission for {len(accepted)} jobs")
    api_of = {n.index: n.api for n in nodes}
    answers = read_all(
        [(api_of[a.node], a.job_id) for a in accepted], start + submitted_s + args.settle
    )
    jobs = [
        Job("cut" if a.node in cut_nodes else "rest", phase(a.at, cut.cut_at, cut.healed_at), ans)
        for a, ans in zip(accepted, answers, strict=True)
    ]
    read = [(job, job.answer) for job in jobs if job.answer is not None]
    still_open = [a.job_id for a, j in zip(accepted, jobs, strict=True) if not ended(j.answer)]
    ended_twice = [a["job"]["job"]["id"] for _, a in read if times_ended(a) > 1]
    published_twice = [a["job"]["job"]["id"] for _, a in read if shards_published_twice(a)]
    figures = tally(
        [Outcome(a.index % SPECS, j.answer) for a, j in zip(accepted, jobs, strict=True)], reference
    )
    left = leftover_containers([n.peer_id for n in nodes])
    return {
        "bench": "partition",
        "nodes": len(nodes),
        "hosts": len(network.hosts),
        "network": {"tag": network.tag, "subnet": network.subnet},
        "engine": args.engine,
        "concurrency": args.concurrency,
        "jobs": args.jobs,
        "rate": args.rate,
        "cut_host": host.name,
        "cut_nodes": len(cut_nodes),
        "cut_after_s": args.cut_after,
        "partition_s": round(cut.healed_at - (cut.cut_at or cut.healed_at), 2),
        "submitted": len(accepted),
        "refused": ledger.refused[:REASONS_SHOWN],
        "refused_count": len(ledger.refused),
        **figures,
        "by_side_and_phase": by_side_and_phase(jobs),
        "latency_s": latency_by_phase(jobs),
        "reruns_across_cut": sum(reruns_across(a, cut_peers, job.side == "cut") for job, a in read),
        "adopted_after_heal": sum(
            adopted_after(a, cut_peers, job.side == "cut", cut.healed_at) for job, a in read
        ),
        "open_jobs": still_open[:REASONS_SHOWN],
        "ended_twice": len(ended_twice),
        "ended_twice_jobs": ended_twice[:REASONS_SHOWN],
        "published_twice": len(published_twice),
        "published_twice_jobs": published_twice[:REASONS_SHOWN],
        # What each node saw just before the heal: did the sides forget each other?
        "sizes_before_heal": cut.sizes_before_heal,
        "converged_after_heal_s": None if converged_s is None else round(converged_s, 2),
        "reference": {str(k): v for k, v in reference.items()},
        "submit_s": round(submitted_s, 2),
        "leftover_containers": None if left is None else len(left),
        "reused": not cluster.temporary,
        **cluster.describe(),
    }


def partition_text(r: dict[str, Any]) -> str:
    """The partition result for people."""
    lines = [
        f"{r['engine']} jobs (concurrency {r['concurrency']}) on {r['nodes']} nodes over"
        f" {r['hosts']} hosts: {r['jobs']} at {r['rate']:g}/s; {r['cut_host']}"
        f" ({r['cut_nodes']} nodes) cut off {r['cut_after_s']:g}s in, for"
        f" {r['partition_s']:g}s",
        f"jobs: {r['completed']} completed, {r['error']} error, {r['cancelled']} cancelled,"
        f" {r['open']} still open at the end; {r['submitted']} accepted,"
        f" {r['refused_count']} refused",
        f"{'requester':<24} {'before':>18} {'during':>18} {'after':>18}   (completed/not)",
    ]
    where = {"cut": f"on {r['cut_host']}", "rest": "on the other hosts"}
    for side in SIDES:
        cells = []
        for p in PHASES:
            c = r["by_side_and_phase"][side][p]
            cells.append(f"{c['completed']}/{c['error'] + c['cancelled'] + c['open']}")
        lines.append(f"{where[side]:<24} " + " ".join(f"{c:>18}" for c in cells))
    latency = r["latency_s"]
    lines.append(
        "completed jobs' latency p50 / p95: "
        + "; ".join(
            f"{p} {latency[p]['p50']:g} / {latency[p]['p95']:g} s"
            for p in PHASES
            if latency[p]["n"]
        )
    )
    if r["reasons"]:
        lines.append("reasons of the jobs that did not complete:")
        lines += [f"  {x['count']} x {x['reason']}" for x in r["reasons"]]
    converged = r["converged_after_heal_s"]
    lines += [
        f"runs given up on a node across the cut and run again: {r['reruns_across_cut']};"
        f" results from across the cut adopted after the heal: {r['adopted_after_heal']}",
        "the nodes saw networks of "
        + ",".join("-" if n is None else str(n) for n in r["sizes_before_heal"])
        + f" just before the heal; every node saw all {r['nodes']} again "
        + (f"{converged:g}s after the heal" if converged is not None else "NEVER (timed out)"),
        f"jobs ended twice: {r['ended_twice']}; shards published twice: {r['published_twice']};"
        f" completed jobs whose results differ from the quiet run: {r['results_differ']}",
        *left_lines(r),
    ]
    lines += [f"REFUSED: {why}" for why in r["refused"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``devstack bench partition``."""
    return run_and_report(args, run_partition, partition_text)
