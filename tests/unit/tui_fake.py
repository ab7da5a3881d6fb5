"""A devstack's HTTP API replayed from documents captured on a real one, for TUI tests.

``data/tui/cluster3.json`` holds, for each node of a real 3-node devstack after six
jobs, two rounds of ``GET /api/v1/stats`` taken 1.5 s apart, ``GET /api/v1/node`` and
``GET /api/v1/jobs?role=requester``. :class:`FakeCluster` serves them through an
``httpx.MockTransport``: a node's first stats request gets round 0, every later one
round 1, so rates and sparklines come out the same every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tui.source import NodeTarget

DATA = Path(__file__).parent / "data" / "tui" / "cluster3.json"
# The answers were captured from a checkout at /work/main: its call sites name files
# there. Read as if captured here, so the screens shorten them the same in any clone.
CAPTURED_IN = "/work/main"
REPO = str(Path(__file__).resolve().parents[2])


def load_captured(path: Path) -> Any:
    """A captured JSON file, its checkout's paths moved to this one."""
    return json.loads(path.read_text().replace(f'"{CAPTURED_IN}/', f'"{REPO}/'))


CLUSTER: dict[str, Any] = load_captured(DATA)
#: A wall clock 100 s after the newest captured job was submitted (ages are fixed).
NOW = (
    max(record["job"]["created_at"] for node in CLUSTER["nodes"] for record in node["jobs"]["jobs"])
    + 100.0
)


def target(node: dict[str, Any], api: str | None = None, **kw: Any) -> NodeTarget:
    return NodeTarget(
        index=node["index"],
        name=node["name"],
        peer_id=node["peer_id"],
        api=api or f"http://node{node['index']}.test",
        bad_actor=node["bad_actor"],
        **kw,
    )


class FakeCluster:
    """Serves the captured documents; counts requests; nodes in ``failing`` answer
    500, those in ``slow`` time out."""

    def __init__(self) -> None:
        self.by_host = {f"node{n['index']}.test": n for n in CLUSTER["nodes"]}
        self.stats_served: dict[str, int] = {}
        self.requests: list[str] = []
        self.failing: set[str] = set()
        self.slow: set[str] = set()

    def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.requests.append(f"{host}{request.url.path}")
        if host in self.failing:
            return httpx.Response(500, json={"error": "boom", "message": "boom"})
        if host in self.slow:
            raise httpx.ReadTimeout("timed out", request=request)
        node = self.by_host[host]
        path = request.url.path
        if path == "/api/v1/stats":
            served = self.stats_served.get(host, 0)
            self.stats_served[host] = served + 1
            return httpx.Response(200, json=node["stats"][min(served, 1)])
        if path == "/api/v1/node":
            return httpx.Response(200, json=node["info"])
        if path == "/api/v1/jobs":
            assert request.url.params["role"] == "requester"
            return httpx.Response(200, json=node["jobs"])
        return httpx.Response(404, json={"error": "not_found"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def targets(self, **kw: Any) -> list[NodeTarget]:
        return [target(n, **kw) for n in CLUSTER["nodes"]]
