"""``devstack bench byzantine``: forged results against each verification policy.

Starts ``--nodes`` nodes of which the last ``--bad-actors`` forge their results
(``devstack up --bad-actors``, colluding unless ``--no-collude``, a share
``--bad-actor-rate`` of them), then streams ``--jobs`` noop jobs of concurrency
``--concurrency`` per policy through it, the policies interleaved so each sees the
same cluster. Every job has the same command, so every honest run has the same
result: the honest CID is the one the honest nodes propose.

Each policy is a job deal (README, verification):

- ``majority``: today's plain majority (``margin`` 1: a tie re-runs once);
- ``escalation``: a disagreement runs on fresh nodes until one result leads by 2;
- ``spot``: escalation, and a unanimous result is checked by one more fresh node
  (with probability :data:`SPOT_RATE`, or when every proposer is new to the requester);
- ``credibility``: escalation, and the requester offers no work to the nodes it
  caught forging;
- ``all``: escalation, spot checks and credibility.

Credibility is each requester's own record, so each policy's jobs go to requesters
of its own (``--requesters`` honest nodes per policy): no policy learns from
another's verdicts.

Reported per policy: jobs completed with the honest result, completed with a
forged one, ended ``error``, still open; extra runs per job (the cost: runs beyond
``c``, from escalations, spot checks and re-runs); the time from submission to the
verdict, p50/p95; how many jobs had a bad actor among their first runs.

This module owns the policies, the submissions and the tally (pure functions,
unit-tested); the cluster, the reading and the report come from
:mod:`devstack.bench.harness` and :mod:`devstack.bench.chaos`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devstack.bench.chaos import after_down, job_events, p50_p95, read_all, run_paced
from devstack.bench.harness import BenchCluster, BenchError, bench_cluster, report, say
from devstack.bench.options import BYZANTINE_POLICIES
from devstack.client import NodeApiError, NodeClient
from devstack.state import NodeEntry
from node.models import Deal, JobSpec

SPOT_RATE = 0.1
POLICIES: dict[str, dict[str, Any]] = {
    "majority": {"margin": 1, "credibility": False},
    "escalation": {"margin": 2, "credibility": False},
    "spot": {"margin": 2, "spot_check": SPOT_RATE, "check_newcomers": True, "credibility": False},
    "credibility": {"margin": 2, "credibility": True},
    "all": {"margin": 2, "spot_check": SPOT_RATE, "check_newcomers": True, "credibility": True},
}
assert tuple(POLICIES) == BYZANTINE_POLICIES
COMMAND = ["echo", "the same result on every honest node"]


def policy_spec(policy: str, concurrency: int) -> JobSpec:
    """The noop job every run of ``policy`` submits."""
    deal = Deal(concurrency=concurrency, **POLICIES[policy])
    return JobSpec(engine="noop", command=COMMAND, verifier="deterministic", deal=deal)


def assign_requesters(
    honest: Sequence[int], policies: Sequence[str], per_policy: int
) -> dict[str, list[int]]:
    """``per_policy`` requesters of its own for each policy, from the ``honest`` node
    indexes in order. Raises BenchError if there are too few."""
    needed = per_policy * len(policies)
    if needed > len(honest):
        raise BenchError(
            f"{len(policies)} policies of {per_policy} requester(s) need {needed} honest"
            f" nodes; the cluster has {len(honest)}"
        )
    return {
        policy: list(honest[k * per_policy : (k + 1) * per_policy])
        for k, policy in enumerate(policies)
    }


@dataclass(frozen=True)
class Submitted:
    policy: str
    api: str
    job_id: str


def honest_cid(answers: Sequence[Mapping[str, Any] | None], bad: frozenset[str]) -> str | None:
    """The result id the honest nodes proposed (the most common one among them)."""
    ids: Counter[str] = Counter()
    for answer in answers:
        for execution in answer["job"]["executions"] if answer else ():
            if execution["node"] not in bad and execution.get("result_id"):
                ids[execution["result_id"]] += 1
    return ids.most_common(1)[0][0] if ids else None


def extra_runs(answer: Mapping[str, Any], concurrency: int) -> int:
    """Runs the job added beyond ``concurrency``: escalations' and spot checks' runs,
    and ``concurrency`` per re-run."""
    added = sum(
        int(e["detail"].get("more", 0))
        for kind in ("escalated", "spot_check")
        for e in job_events(answer, kind)
    )
    return added + concurrency * len(job_events(answer, "rerun"))


def verdict_s(answer: Mapping[str, Any]) -> float | None:
    """Seconds from the job's creation to its verdict: its first shard told to
    publish, or its end in error. None while it is open."""
    created = job_events(answer, "created")
    # A node's "error" (an acceptance that did not reach it) names it: not the job's end.
    failed = [e for e in job_events(answer, "error") if "peer" not in e["detail"]]
    ends = job_events(answer, "publishing") or failed
    if not created or not ends:
        return None
    return ends[0]["at"] - created[0]["at"]


def first_bad(answer: Mapping[str, Any], bad: frozenset[str]) -> int:
    """Bad actors among the job's first runs (before any escalation or re-run)."""
    accepted = [e["detail"]["peer"] for e in job_events(answer, "bid_accepted")]
    escalations = sorted(
        job_events(answer, "escalated") + job_events(answer, "spot_check"), key=lambda e: e["at"]
    )
    if escalations:
        first = escalations[0]["detail"].get("first", [])
        return len(bad & set(first))
    concurrency = int(answer["job"]["job"]["spec"]["deal"]["concurrency"])
    return len(bad & set(accepted[:concurrency]))


def tally_policy(
    answers: Sequence[Mapping[str, Any] | None],
    bad: frozenset[str],
    honest: str | None,
    concurrency: int,
) -> dict[str, Any]:
    """One policy's figures over its jobs' final describes (None: unreadable)."""
    outcomes: Counter[str] = Counter()
    extras: list[int] = []
    verdicts: list[float] = []
    with_bad: Counter[int] = Counter()
    checks: Counter[str] = Counter()
    stuck: list[dict[str, Any]] = []  # the open jobs, to see where they stand
    for answer in answers:
        if answer is None:
            outcomes["open"] += 1
            continue
        state = answer["job"]["state"]
        if state not in ("completed", "error"):
            kinds = [e["kind"] for e in answer["events"] if not e["detail"].get("role")]
            stuck.append({"job": answer["job"]["job"]["id"], "state": state, "last": kinds[-4:]})
        if state == "completed":
            cids = {s["cid"] for s in answer.get("shards", [])}
            outcomes["honest" if cids == {honest} else "forged"] += 1
        elif state == "error":
            outcomes["error"] += 1
        else:
            outcomes["open"] += 1
        extras.append(extra_runs(answer, concurrency))
        seconds = verdict_s(answer)
        if seconds is not None:
            verdicts.append(seconds)
        with_bad[first_bad(answer, bad)] += 1
        for kind in ("escalated", "spot_check", "rerun"):
            checks[kind] += len(job_events(answer, kind))
    jobs = len(answers)
    return {
        "jobs": jobs,
        "honest": outcomes["honest"],
        "forged": outcomes["forged"],
        "error": outcomes["error"],
        "open": outcomes["open"],
        "extra_runs": sum(extras),
        "extra_runs_per_job": round(sum(extras) / jobs, 3) if jobs else None,
        "escalations": checks["escalated"],
        "spot_checks": checks["spot_check"],
        "reruns": checks["rerun"],
        "verdict_s": p50_p95(verdicts),
        "first_runs_with_bad": {str(k): v for k, v in sorted(with_bad.items())},
        "open_jobs": stuck[:5],
    }


def submit_interleaved(
    total: int,
    rate: float,
    order: Sequence[tuple[str, NodeEntry]],
    specs: Mapping[str, JobSpec],
) -> tuple[list[Submitted], list[str]]:
    """Submit ``total`` jobs at ``rate``/s, job ``i`` as ``order[i % len(order)]`` says
    (its policy and its requester); the jobs submitted and the refusals."""
    clients = {node.api: NodeClient(node.api) for _, node in order}
    submitted: list[Submitted] = []
    refused: list[str] = []

    def one(i: int) -> None:
        policy, node = order[i % len(order)]
        try:
            job_id = clients[node.api].submit(specs[policy])["id"]
        except NodeApiError as exc:
            refused.append(f"{policy} on {node.name}: {exc}"[:200])
            return
        submitted.append(Submitted(policy, node.api, job_id))

    try:
        run_paced(total, rate, one)
    finally:
        for client in clients.values():
            client.close()
    return submitted, refused


def submission_order(
    policies: Sequence[str], requesters: Mapping[str, Sequence[NodeEntry]]
) -> list[tuple[str, NodeEntry]]:
    """One round of the interleaving: each policy in turn, each of its requesters in
    turn, so every policy gets the same share of jobs at every moment."""
    rounds = max(len(requesters[p]) for p in policies)
    return [
        (policy, requesters[policy][k % len(requesters[policy])])
        for k in range(rounds)
        for policy in policies
    ]


def run_byzantine(cluster: BenchCluster, args: argparse.Namespace) -> dict[str, Any]:
    nodes = sorted(cluster.state.nodes, key=lambda n: n.index)
    bad = frozenset(n.peer_id for n in nodes if n.bad_actor)
    honest_nodes = [n for n in nodes if not n.bad_actor]
    indexes = assign_requesters([n.index for n in honest_nodes], args.policies, args.requesters)
    by_index = {n.index: n for n in nodes}
    requesters = {p: [by_index[i] for i in found] for p, found in indexes.items()}
    specs = {p: policy_spec(p, args.concurrency) for p in args.policies}
    total = args.jobs * len(args.policies)
    say(
        f"submitting {args.jobs} noop jobs of c={args.concurrency} per policy"
        f" ({', '.join(args.policies)}), {total} in all at {args.rate:g}/s"
    )
    started = time.monotonic()
    order = submission_order(args.policies, requesters)
    submitted, refused = submit_interleaved(total, args.rate, order, specs)
    submit_s = time.monotonic() - started
    say(f"submitted in {submit_s:.0f}s; reading every job (up to {args.settle:g}s more)")
    answers = read_all([(s.api, s.job_id) for s in submitted], time.monotonic() + args.settle)
    honest = honest_cid(answers, bad)
    policies = {}
    for policy in args.policies:
        mine = [a for s, a in zip(submitted, answers, strict=True) if s.policy == policy]
        policies[policy] = {
            "deal": POLICIES[policy],
            "requesters": [n.name for n in requesters[policy]],
            **tally_policy(mine, bad, honest, args.concurrency),
        }
    return {
        "bench": "byzantine",
        "nodes": len(nodes),
        "bad_actors": len(bad),
        "collude": args.collude,
        "bad_actor_rate": args.bad_actor_rate,
        "concurrency": args.concurrency,
        "jobs_per_policy": args.jobs,
        "rate": args.rate,
        "honest_cid": honest,
        "submit_s": round(submit_s, 1),
        "refused": refused[:10],
        "refused_count": len(refused),
        "policies": policies,
        **cluster.describe(),
    }


def byzantine_text(r: dict[str, Any]) -> str:
    how = "colluding" if r["collude"] else "each forging alone"
    share = "all" if r["bad_actor_rate"] == 1 else f"{r['bad_actor_rate']:.0%}"
    lines = [
        f"byzantine: {r['nodes']} nodes, {r['bad_actors']} bad actors ({how}, forging"
        f" {share} of their results), {r['jobs_per_policy']} noop jobs of"
        f" c={r['concurrency']} per policy at {r['rate']:g}/s over all policies",
        f"{'policy':<12} {'honest':>7} {'forged':>7} {'error':>6} {'open':>5}"
        f" {'extra/job':>9} {'escal.':>6} {'spot':>5} {'rerun':>5}"
        f" {'verdict p50/p95 s':>18}  first runs with 0/1/2/3.. bad",
    ]
    for name, p in r["policies"].items():
        v = p["verdict_s"]
        verdict = f"{v['p50']}/{v['p95']}" if v["p50"] is not None else "-"
        spread = "/".join(str(p["first_runs_with_bad"].get(str(k), 0)) for k in range(4))
        lines.append(
            f"{name:<12} {p['honest']:>7} {p['forged']:>7} {p['error']:>6} {p['open']:>5}"
            f" {p['extra_runs_per_job']:>9} {p['escalations']:>6} {p['spot_checks']:>5}"
            f" {p['reruns']:>5} {verdict:>18}  {spread}"
        )
    lines.append(f"submitted in {r['submit_s']:g}s; refused: {r['refused_count']}")
    lines += [f"REFUSED: {why}" for why in r["refused"]]
    left = r.get("left_after_down")
    if left is not None:
        lines.append(
            f"left after down: {len(left['processes'])} node processes,"
            f" {left['containers']} containers"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``devstack bench byzantine``."""
    load = os.getloadavg()[0]
    with bench_cluster(
        args.nodes,
        bad_actors=args.bad_actors,
        collude=args.collude,
        bad_actor_rate=args.bad_actor_rate,
    ) as cluster:
        result = run_byzantine(cluster, args)
    result["left_after_down"] = after_down(result)
    report(result, args.json, byzantine_text, load)
    left = result["left_after_down"]
    if left and (left["processes"] or left["containers"]):
        raise BenchError(f"the cluster left {left} behind")
    return 0
