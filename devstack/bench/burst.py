"""A burst of jobs through a devstack, and what it cost: the load generator of the benches.

:func:`run_burst` submits ``jobs`` copies of a spec at ``rate`` per second to random
requesters (from a pool of threads, so a slow answer does not hold the schedule
back), waits until every requester says it has no job open, then reads each job's
outcome from its requester's job list. Nothing polls the nodes while the jobs run
(a poll per job costs the nodes CPU the figures would count), and the node CPU is
read before the first submission and once every job has ended.

Figures come from the requesters' own clocks: a job's latency is its
``updated_at`` (when it ended) minus its ``created_at``; the sustained rate is the
jobs completed over the span from the first one created to the last one ended.
The cluster's message counters (``/api/v1/node``'s ``transport``) before and after
give the messages per job by kind, and how many direct messages had to open a
stream or dial first.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psutil

from devstack import state as st
from devstack.client import NodeApiError, NodeClient
from devstack.state import ClusterState
from node.models import JobSpec
from profiles.quantiles import percentile

END_TIMEOUT_S = 600.0
LIST_LIMIT = 1000  # the API's cap on one job list
_SUBMITTERS = 16


class BurstError(RuntimeError):
    """The burst could not be run or measured; the text says why."""


@dataclass
class Counters:
    """The cluster's counters at one moment: node CPU seconds, messages by
    ``channel.direction.Kind``, and direct requests, streams opened and dials."""

    cpu_s: float = 0.0
    messages: Counter[str] = field(default_factory=Counter)
    streams: Counter[str] = field(default_factory=Counter)

    def minus(self, before: Counters) -> Counters:
        return Counters(
            self.cpu_s - before.cpu_s,
            self.messages - before.messages,
            self.streams - before.streams,
        )


def read_counters(cluster: ClusterState, clients: dict[str, NodeClient]) -> Counters:
    """Every live node's CPU and transport counters, now."""
    found = Counters()
    for node in st.live_nodes(cluster):
        found.cpu_s += sum(psutil.Process(node.pid).cpu_times()[:2])
        transport = clients[node.api].info()["transport"]
        found.messages.update(transport.get("messages") or {})
        found.streams.update(
            {k: v for k, v in (transport.get("streams") or {}).items() if isinstance(v, int)}
        )
    return found


def message_figures(counted: Counters, jobs: int) -> dict[str, Any]:
    """Messages per job, in all and by kind (counted where they were sent), and the
    share of direct requests that opened a stream or dialled."""
    sent = {k: v for k, v in counted.messages.items() if ".out." in k}
    by_kind: Counter[str] = Counter()
    for key, count in sent.items():
        channel, _, kind = key.split(".", 2)
        by_kind[f"{channel}.{kind}"] += count
    requests = counted.streams.get("requests", 0)
    return {
        "messages_per_job": round(sum(sent.values()) / jobs, 2) if jobs else None,
        "messages_per_job_by_kind": {
            k: round(v / jobs, 3) for k, v in sorted(by_kind.items()) if jobs
        },
        "gossip_deliveries_per_job": round(
            sum(v for k, v in counted.messages.items() if k.startswith("gossip.in.")) / jobs, 2
        )
        if jobs
        else None,
        "direct_requests": requests,
        "opened_stream_share": round(counted.streams.get("opened", 0) / requests, 4)
        if requests
        else None,
        "dialled_share": round(counted.streams.get("dialled", 0) / requests, 4)
        if requests
        else None,
    }


@dataclass
class Burst:
    """What :func:`run_burst` measured."""

    submitted: list[tuple[str, str]]  # (requester API, job id)
    refused: list[str]  # submissions the API refused, with why
    records: dict[str, dict[str, Any]]  # job id -> its requester's record
    submit_s: float
    end_s: float  # first submission to every job ended
    counted: Counters

    def figures(self, jobs: int, rate: float) -> dict[str, Any]:
        states = Counter(r["state"] for r in self.records.values())
        ended = [r for r in self.records.values() if r["state"] in ("completed", "error")]
        took = [(r["updated_at"] - r["job"]["created_at"]) * 1000 for r in ended]
        completed = [r for r in ended if r["state"] == "completed"]
        sustained = None
        if completed:
            first = min(r["job"]["created_at"] for r in self.records.values())
            last = max(r["updated_at"] for r in completed)
            sustained = round(len(completed) / max(last - first, 1e-9), 2)
        failed = jobs - states["completed"]
        return {
            "jobs": jobs,
            "rate": rate,
            "completed": states["completed"],
            "failed": failed,
            "failures": _failure_reasons(self),
            "submit_rate": round(len(self.submitted) / self.submit_s, 2) if self.submit_s else None,
            "sustained_jobs_per_s": sustained,
            "wall_s": round(self.end_s, 1),
            **{
                f"latency_{name}_ms": round(percentile(took, q), 1) if took else None
                for name, q in (("p50", 50), ("p95", 95), ("p99", 99))
            },
            "latency_max_ms": round(max(took), 1) if took else None,
            "node_cpu_s": round(self.counted.cpu_s, 1),
            "node_cpu_ms_per_job": round(1000 * self.counted.cpu_s / jobs, 1) if jobs else None,
            **message_figures(self.counted, jobs),
        }


def _failure_reasons(burst: Burst, shown: int = 5) -> list[str]:
    reasons: Counter[str] = Counter(burst.refused)
    for record in burst.records.values():
        if record["state"] != "completed":
            reasons[f"{record['state']}: {record.get('reason') or '-'}"] += 1
    return [f"{count} x {reason}" for reason, count in reasons.most_common(shown)]


def run_burst(
    cluster: ClusterState, jobs: int, spec: JobSpec, rate: float, *, seed: int = 0
) -> Burst:
    """Submit, wait for the end, read the outcomes; see the module docstring.

    Raises :class:`BurstError` if the jobs do not all end within
    :data:`END_TIMEOUT_S` of the last submission, or a node cannot be asked.
    """
    nodes = st.live_nodes(cluster)
    if not nodes:
        raise BurstError("no live node to submit to")
    clients = {n.api: NodeClient(n.api) for n in nodes}
    try:
        before = read_counters(cluster, clients)
        start = time.monotonic()
        submitted, refused = _submit(clients, jobs, spec, rate, random.Random(seed))
        submit_s = time.monotonic() - start
        _wait_for_end({api for api, _ in submitted}, clients)
        end_s = time.monotonic() - start
        counted = read_counters(cluster, clients).minus(before)
        records = _outcomes(submitted, clients)
    finally:
        for client in clients.values():
            client.close()
    return Burst(submitted, refused, records, submit_s, end_s, counted)


def _submit(
    clients: dict[str, NodeClient],
    jobs: int,
    spec: JobSpec,
    rate: float,
    rng: random.Random,
) -> tuple[list[tuple[str, str]], list[str]]:
    apis = list(clients)
    targets = [rng.choice(apis) for _ in range(jobs)]
    submitted: list[tuple[str, str]] = []
    refused: list[str] = []
    lock = threading.Lock()

    def one(api: str) -> None:
        try:
            job_id = clients[api].submit(spec)["id"]
        except NodeApiError as exc:
            with lock:
                refused.append(f"refused: {str(exc)[:200]}")
            return
        with lock:
            submitted.append((api, job_id))

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=_SUBMITTERS) as pool:
        for i, api in enumerate(targets):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            pool.submit(one, api)
    return submitted, refused


def _wait_for_end(apis: set[str], clients: dict[str, NodeClient]) -> None:
    deadline = time.monotonic() + END_TIMEOUT_S
    waiting = set(apis)
    while waiting:
        for api in list(waiting):
            try:
                if clients[api].health().get("open_jobs", 0) == 0:
                    waiting.discard(api)
            except NodeApiError:
                pass  # busy or restarting: ask again
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise BurstError(f"{len(waiting)} requester(s) still had open jobs after the burst")
        time.sleep(0.5)


def _outcomes(
    submitted: list[tuple[str, str]], clients: dict[str, NodeClient]
) -> dict[str, dict[str, Any]]:
    wanted: dict[str, set[str]] = {}
    for api, job_id in submitted:
        wanted.setdefault(api, set()).add(job_id)
    records: dict[str, dict[str, Any]] = {}
    for api, ids in wanted.items():
        for record in clients[api].list_jobs(role="requester", limit=LIST_LIMIT):
            if record["job"]["id"] in ids:
                records[record["job"]["id"]] = record
        for job_id in ids - records.keys():  # beyond one list: ask one by one
            records[job_id] = clients[api].describe(job_id)["job"]
    return records
