"""Job operations across a devstack: find a job's requester, wait for it, fetch results.

A job's full story lives on its requester; any node that knows the job names
the requester, so these helpers ask around and then go to the source.
"""

from __future__ import annotations

import io
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devstack import state as st
from devstack.client import NodeApiError, NodeClient, download
from devstack.state import ClusterState

TERMINAL = {"completed", "error", "cancelled"}


class JobNotFound(LookupError):
    pass


def _api_of(cluster: ClusterState, peer_id: str) -> str:
    node = st.node_by_peer(cluster, peer_id)
    if node is None:
        raise JobNotFound(f"the job's requester {peer_id} is not a node of this devstack")
    return node.api


def describe(cluster: ClusterState, job_id: str) -> dict[str, Any]:
    """The requester's description of ``job_id``; raises JobNotFound."""

    def ask(api: str) -> dict[str, Any] | None:
        try:
            with NodeClient(api) as client:
                return client.find(job_id)
        except NodeApiError:
            return None

    apis = [n.api for n in st.live_nodes(cluster)]
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(apis)))) as pool:
        for answer in pool.map(ask, apis):
            if answer is None:
                continue
            if answer["requester"] == answer["node"]:
                return answer
            full = ask(_api_of(cluster, answer["requester"]))
            if full is not None:
                return full
    raise JobNotFound(f"no node of this devstack knows job {job_id!r} (see `devstack list`)")


def wait(api: str, job_id: str, timeout: float, poll: float = 0.05) -> dict[str, Any]:
    """Poll the requester until the job ends; raises TimeoutError with its last state."""
    deadline = time.monotonic() + timeout
    with NodeClient(api) as client:
        while True:
            answer = client.describe(job_id)
            if answer["job"]["state"] in TERMINAL:
                return answer
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {answer['job']['state']} after {timeout:.0f}s"
                )
            time.sleep(poll)


def published_results(description: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e
        for e in description["job"]["executions"]
        if e["state"] == "published" and e.get("result_url")
    ]


def fetch_results(description: dict[str, Any], out_dir: Path) -> list[Path]:
    """Download and unpack every published result into ``out_dir/<node>/``."""
    paths = []
    for execution in published_results(description):
        target = out_dir / execution["node"]
        target.mkdir(parents=True, exist_ok=True)
        archive = download(execution["result_url"])
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
        paths.append(target)
    return paths


def first_stdout(description: dict[str, Any]) -> str | None:
    """stdout of the first published result, downloaded in full."""
    for execution in published_results(description):
        archive = download(execution["result_url"])
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.extractfile("stdout")
            if member is not None:
                return member.read().decode("utf-8", "replace")
    return None


def list_jobs(cluster: ClusterState, limit: int = 100) -> list[dict[str, Any]]:
    """Every job requested on a live node, newest first."""

    def ask(api: str) -> list[dict[str, Any]]:
        try:
            with NodeClient(api) as client:
                return client.list_jobs(role="requester", limit=limit)
        except NodeApiError:
            return []

    apis = [n.api for n in st.live_nodes(cluster)]
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(apis)))) as pool:
        jobs = [j for answer in pool.map(ask, apis) for j in answer]
    jobs.sort(key=lambda j: j["job"]["created_at"], reverse=True)
    return jobs[:limit]
