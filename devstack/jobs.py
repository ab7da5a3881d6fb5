"""Job operations across a devstack: find a job's requester, wait for it, fetch results.

A job's full story lives on its requester; any node that knows the job names
the requester, so these helpers ask around and then go to the source.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devstack import state as st
from devstack.client import NodeApiError, NodeClient, download
from devstack.errors import DevstackError
from devstack.state import ClusterState, NodeEntry

# ``node.models.JobState.terminal``, written out (tests/unit/test_registries.py checks
# it): `devstack list` and `describe` start faster without the job model's msgspec.
TERMINAL = {"completed", "error", "cancelled"}


class JobNotFound(DevstackError, LookupError):
    """No node of the devstack knows the job (or a prefix matches several)."""


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


def wait(api: str, job_id: str, timeout: float) -> dict[str, Any]:
    """Wait for the job to end on its requester (which answers as soon as it has, see
    ``GET /api/v1/jobs/{id}?wait=``); raises TimeoutError with its last state."""
    deadline = time.monotonic() + timeout
    with NodeClient(api) as client:
        while True:
            left = deadline - time.monotonic()
            answer = client.describe(job_id, wait=max(1, min(30, math.ceil(left))))
            if answer["job"]["state"] in TERMINAL:
                return answer
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {answer['job']['state']} after {timeout:.0f}s"
                )
            if answer["requester"] != answer["node"]:
                time.sleep(0.2)  # not asked of its requester: it could not wait


def _asked_node(cluster: ClusterState, providers: list[str], via: str | None) -> NodeEntry:
    """The node that fetches a result for us: ``via`` if given, else a live node that
    does not hold it (so the blocks cross bitswap), else a provider."""
    if via is not None:
        return st.find_node(cluster, via)
    live = st.live_nodes(cluster)
    if not live:
        raise JobNotFound("no node of this devstack is running")
    others = [n for n in live if n.peer_id not in providers]
    return (others or live)[0]


def fetch_shards(
    cluster: ClusterState,
    description: dict[str, Any],
    out_dir: Path,
    *,
    via: str | None = None,
    timeout: float = 300.0,
) -> list[Path]:
    """Write each published shard's results tree to ``out_dir/shard-K`` (which must
    not exist): ``ipfs://`` results fetched by CID over bitswap by the node ``via``
    (default: one that does not hold them) from the nodes that published them;
    ``noop`` results downloaded from a node that has them. The paths, in shard order.

    Raises NodeApiError or TarError when a result cannot be fetched or unpacked,
    FileExistsError if a shard's directory exists.
    """
    paths = []
    for shard in description.get("shards", []):
        if shard["cid"] is None:
            continue
        target = out_dir / f"shard-{shard['shard']}"
        if target.exists():
            raise FileExistsError(f"{target} exists")
        locations = shard["locations"]
        ipfs = [loc for loc in locations if loc.startswith("ipfs://")]
        if ipfs or not locations:
            node = _asked_node(cluster, shard["providers"], via)
            out_dir.mkdir(parents=True, exist_ok=True)
            with NodeClient(node.api) as client:
                client.fetch_content(
                    shard["cid"], target, providers=shard["providers"], timeout=timeout
                )
        else:
            from node.results import unpack_results  # here: most verbs unpack nothing

            unpack_results(io.BytesIO(download(locations[0])), target)
        paths.append(target)
    return paths


def shard_stdouts(cluster: ClusterState, description: dict[str, Any]) -> list[str]:
    """Each published shard's stdout, in shard order, fetched in full."""
    with tempfile.TemporaryDirectory(prefix="devstack-stdout-") as scratch:
        paths = fetch_shards(cluster, description, Path(scratch) / "results")
        return [(p / "stdout").read_text(errors="replace") for p in paths]


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
