"""The jobs a bench sends through a devstack and reads back: the noop spec, paced
submission to random requesters, the wait for every job to end, and the requester's
own events of a job (the figures' source).

The load generator that measures what a burst cost the nodes is
:mod:`devstack.bench.burst`; this module is the plain path, for benches that read
each job's story from its events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack.bench.harness import BenchCluster
from devstack.client import NodeClient
from devstack.jobs import TERMINAL
from node.models import Deal, JobSpec

WAIT_S = 300.0


def noop_spec(concurrency: int) -> JobSpec:
    """A noop job (so Docker is not the bottleneck) run by ``concurrency`` nodes."""
    return JobSpec(engine="noop", command=["echo", "hi"], deal=Deal(concurrency=concurrency))


def submit_all(
    cluster: BenchCluster, jobs: int, spec: JobSpec, rate: float
) -> list[tuple[str, str]]:
    """Submit ``spec`` ``jobs`` times at ``rate`` per second to random requesters;
    returns (requester API, job id) pairs."""
    rng = random.Random(0)
    submitted = []
    start = time.monotonic()
    clients = {n.api: NodeClient(n.api) for n in cluster.state.nodes}
    try:
        for i in range(jobs):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            api = rng.choice(list(clients))
            submitted.append((api, clients[api].submit(spec)["id"]))
    finally:
        for client in clients.values():
            client.close()
    return submitted


def wait_all(submitted: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each submitted job's describe once it ended (or as it stands after :data:`WAIT_S`)."""
    deadline = time.monotonic() + WAIT_S

    def final(pair: tuple[str, str]) -> dict[str, Any]:
        api, job_id = pair
        with NodeClient(api) as client:
            while True:
                left = max(1, min(30, int(deadline - time.monotonic())))
                answer = client.describe(job_id, wait=left)  # answers once the job ends
                if answer["job"]["state"] in TERMINAL or time.monotonic() > deadline:
                    return answer

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(final, submitted))


def requester_events(events: Sequence[dict[str, Any]], requester: str) -> list[dict[str, Any]]:
    """The requester's own record of a job: its events, not those of its compute role
    (which carry ``detail.role``), ordered by time."""
    mine = [e for e in events if e["node"] == requester and "role" not in e["detail"]]
    return sorted(mine, key=lambda e: e["at"])
