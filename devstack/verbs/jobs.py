"""``devstack list``, ``describe``, ``step``, ``cancel`` and ``get``: jobs, from their
story to their published results (``submit`` is :mod:`devstack.verbs.submit`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from devstack import jobs
from devstack import state as st
from devstack.client import NodeClient
from devstack.errors import ClusterError
from devstack.verbs import local_files_reported, print_json, running_cluster
from node.argtypes import positive

# -- list / describe -----------------------------------------------------------------


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _duration(record: dict[str, Any]) -> str:
    if record["state"] not in jobs.TERMINAL:
        return "-"
    return f"{record['updated_at'] - record['job']['created_at']:.2f}s"


def list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=positive(int), default=50)
    p.add_argument("--json", action="store_true")


def list_jobs(args: argparse.Namespace) -> int:
    records = jobs.list_jobs(running_cluster(args.state_dir), limit=args.limit)
    if args.json:
        print_json({"jobs": records})
        return 0
    print(f"{'job':<36} {'state':<10} {'c':>2} {'engine':<6} {'image':<16} {'age':>5} {'took':>7}")
    now = time.time()
    for r in records:
        spec = r["job"]["spec"]
        print(
            f"{r['job']['id']:<36} {r['state']:<10} {spec['deal']['concurrency']:>2}"
            f" {spec['engine']:<6} {spec['image'][:16]:<16}"
            f" {_age(now - r['job']['created_at']):>5} {_duration(r):>7}"
        )
    return 0


def job_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job")


def describe_arguments(p: argparse.ArgumentParser) -> None:
    job_arguments(p)
    p.add_argument("--json", action="store_true")


def describe(args: argparse.Namespace) -> int:
    answer = jobs.describe(running_cluster(args.state_dir), args.job)
    if args.json:
        print_json(answer)
        return 0
    record = answer["job"]
    job, spec = record["job"], record["job"]["spec"]
    created = job["created_at"]
    print(f"job        {job['id']}")
    print(f"state      {record['state']}" + (f"  ({record['reason']})" if record["reason"] else ""))
    for wait in answer.get("waiting", []):
        print(f"why        shard {wait['shard']}: {wait['why']}")
    print(f"requester  {job['requester']}")
    print(
        f"spec       {spec['engine']} {spec['image']} {' '.join(spec['command'])}"
        f"  concurrency={spec['deal']['concurrency']} verifier={spec['verifier']}"
        f" publisher={spec['publisher']}"
    )
    print(f"created    {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(created))}Z")
    for gate in answer.get("gates", []):
        behind = " ".join(f"{k}={v}" for k, v in gate.items() if k not in ("name", "shard"))
        print(
            f"gate       shard {gate['shard']} waiting at {gate['name']}: {behind}"
            f"  (`devstack step {job['id']}`)"
        )
    print(f"shards     {job['shards']}")
    for shard in answer.get("shards", []):
        published = shard["cid"] or "not published"
        print(f"  {shard['shard']:>3}  {published}  {len(shard['providers'])} provider(s)")
    print("executions")
    for e in record["executions"]:
        extra = e.get("reason") or e.get("result_url") or ""
        print(f"  {e['shard']:>3}  {e['node']}  {e['state']:<16} {extra}")
    print("events")
    for e in answer["events"]:
        stamp = time.strftime("%H:%M:%S", time.gmtime(e["at"])) + f".{int(e['at'] % 1 * 1000):03d}"
        peer = e["detail"].get("peer", "")
        who = f" {peer[-8:]}" if peer else ""
        detail = {k: v for k, v in e["detail"].items() if k not in ("peer", "state")}
        extra = " ".join(f"{k}={v}" for k, v in detail.items())
        shard = "" if e.get("shard") is None else f"#{e['shard']}"
        print(
            f"  {stamp}Z  +{(e['at'] - created) * 1000:8.1f}ms  {e['node'][-8:]} {shard:>4}"
            f"  {e['kind']:<16}{who} {extra}"
        )
    return 0


# -- step / cancel / get ---------------------------------------------------------------


def _described(cluster: st.ClusterState, job_ref: str) -> tuple[dict[str, Any], NodeClient]:
    """The requester's description of the job and a client of that requester's API."""
    answer = jobs.describe(cluster, job_ref)
    requester = st.node_by_peer(cluster, answer["requester"])
    if requester is None:
        raise ClusterError(f"the job's requester {answer['requester']} is not in this devstack")
    return answer, NodeClient(requester.api)


def _on_requester(args: argparse.Namespace) -> tuple[str, NodeClient]:
    """The full id of ``args.job`` and a client of its requester's API."""
    answer, client = _described(running_cluster(args.state_dir), args.job)
    return answer["job"]["job"]["id"], client


def job_output(cluster: st.ClusterState, job_ref: str, args: argparse.Namespace) -> int:
    """``devstack logs JOB``: what the job printed so far (with ``--follow``, then each
    line as it comes, until the job ends), stdout lines to stdout and stderr lines
    to stderr. Each line is labelled with its node (and shard) when the job runs in
    more than one place; lost lines are reported on stderr."""
    answer, requester = _described(cluster, job_ref)
    job = answer["job"]["job"]
    narrow: dict[str, Any] = {"shard": args.shard, "stream": "stderr" if args.stderr else None}
    if args.from_node:
        narrow["node"] = st.find_node(cluster, args.from_node).peer_id
    if args.shard is not None and args.shard >= job["shards"]:
        raise ClusterError(f"job {job['id']} has {job['shards']} shard(s): no shard {args.shard}")
    places = job["spec"]["deal"]["concurrency"] if "node" not in narrow else 1
    places *= job["shards"] if args.shard is None else 1
    names = {n.peer_id: n.name for n in cluster.nodes}
    with requester as client:
        for record in client.job_output(job["id"], follow=args.follow, **narrow):
            if "ended" in record:
                break
            where = names.get(record["node"], record["node"][-8:])
            if job["shards"] > 1:
                where += f"#{record['shard']}"
            if "dropped" in record:
                print(f"{where}: … {record['dropped']} line(s) lost", file=sys.stderr, flush=True)
                continue
            text = f"{where} | {record['line']}" if places > 1 else record["line"]
            print(text, file=sys.stderr if record["stream"] == "stderr" else sys.stdout, flush=True)
    return 0


def step(args: argparse.Namespace) -> int:
    job_id, requester = _on_requester(args)
    with requester as client:
        opened = client.step(job_id)["opened"]
    print(f"job {job_id}: opened the {opened} gate")
    return 0


def cancel(args: argparse.Namespace) -> int:
    job_id, requester = _on_requester(args)
    with requester as client:
        client.cancel(job_id)
    print(f"job {job_id}: cancelled")
    return 0


def get_arguments(p: argparse.ArgumentParser) -> None:
    job_arguments(p)
    p.add_argument("-o", "--output", type=Path, default=None, help="default ./job-<id>")
    p.add_argument(
        "--node",
        default=None,
        help="node that fetches ipfs results over bitswap (default: one that does not hold them)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds each fetch may take")


def get(args: argparse.Namespace) -> int:
    cluster = running_cluster(args.state_dir)
    answer = jobs.describe(cluster, args.job)
    out = args.output or Path(f"job-{args.job[:8]}")
    with local_files_reported():  # a shard's DIR exists, or an unsafe archive
        paths = jobs.fetch_shards(cluster, answer, out, via=args.node, timeout=args.timeout)
    if not paths:
        state = answer["job"]["state"]
        raise ClusterError(f"job {args.job} has no published results (state {state})")
    for path in paths:
        print(f"{path}")
    return 0
