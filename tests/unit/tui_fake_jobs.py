"""Jobs described by a real devstack, replayed for the job view's and the form's tests.

``data/tui/describes.json`` holds ``GET /api/v1/jobs/{id}`` answers captured on a real
3-node devstack (what each one is: its ``captured_from``). :func:`describes` gives
them with that cluster's peer ids replaced by those of ``cluster3.json`` (node-0 is
node-0, ...) and their clocks moved so each job was created
:data:`CREATED_AGO` seconds before ``tui_fake.NOW``, so they read as jobs of the
cluster :class:`~tests.unit.tui_fake.FakeCluster` replays.

:class:`FakeJobsCluster` serves them on node-0 (the requester), as a step-mode job
walks through its gates: each ``POST /api/v1/jobs/{id}/step`` moves the job to its
next captured stage, and a job at no gate answers 409 as the node does. It also
answers ``GET /api/v1/images`` and ``POST /api/v1/jobs`` (recording the specs).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx

from tests.unit.tui_fake import CLUSTER, NOW, FakeCluster
from tui.source import ClusterSource

DATA = Path(__file__).parent / "data" / "tui" / "describes.json"
CREATED_AGO = 30.0
_TIMES = ("at", "created_at", "updated_at")

#: The stages of each captured job, in order (``step`` moves to the next).
STAGES: dict[str, tuple[str, ...]] = {
    "step": ("step_verdict", "step_publish", "step_completed"),
    "sharded": ("sharded_verdict", "sharded_publish", "sharded_completed"),
    "split": ("split_verdict", "split_error"),
    "simple": ("simple_completed",),
}


def _shift(value: Any, delta: float) -> Any:
    if isinstance(value, dict):
        return {
            k: v + delta if k in _TIMES and isinstance(v, int | float) else _shift(v, delta)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    return value


def describes() -> dict[str, dict[str, Any]]:
    """Every captured answer by name, on cluster3's peers and clock."""
    raw = DATA.read_text()
    captured = json.loads(raw)
    for old, node in zip(captured["peers"], CLUSTER["nodes"], strict=True):
        raw = raw.replace(old, node["peer_id"])
    answers: dict[str, dict[str, Any]] = json.loads(raw)["describes"]
    shifted = {}
    for name, answer in answers.items():
        delta = NOW - CREATED_AGO - answer["job"]["job"]["created_at"]
        shifted[name] = _shift(answer, delta)
    return shifted


DESCRIBES = describes()


def job_id(job: str) -> str:
    """The id of captured job ``job`` (a key of :data:`STAGES`)."""
    return str(DESCRIBES[STAGES[job][0]]["job"]["job"]["id"])


class FakeJobsCluster(FakeCluster):
    """The captured cluster, with the captured jobs on node-0."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = {job_id(job): 0 for job in STAGES}
        self.stages = {job_id(job): STAGES[job] for job in STAGES}
        self.submitted: list[dict[str, Any]] = []
        self.steps: list[str] = []
        self.cancels: list[str] = []
        #: What POST /api/v1/jobs answers: None accepts, else (status, error body).
        self.refuse: tuple[int, dict[str, Any]] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        if host in self.failing or host in self.slow:
            return super().handler(request)
        requester = host == "node0.test"
        if path == "/api/v1/images":
            self.requests.append(f"{host}{path}")
            return httpx.Response(200, json={"node": host, "images": ["busybox:latest"]})
        if path == "/api/v1/jobs" and request.method == "POST":
            self.requests.append(f"{host}{path}")
            spec = json.loads(request.content)
            if self.refuse is not None:
                status, body = self.refuse
                return httpx.Response(status, json=body)
            self.submitted.append(spec)
            return httpx.Response(
                201, json={"id": job_id("simple"), "requester": CLUSTER["nodes"][0]["peer_id"]}
            )
        if path.startswith("/api/v1/jobs/"):
            self.requests.append(f"{host}{path}")
            parts = path.split("/")
            jid = parts[4]
            if jid not in self.stage or not requester:
                return httpx.Response(
                    404, json={"error": "not_found", "message": f"no job {jid!r} on this node"}
                )
            stages, at = self.stages[jid], self.stage[jid]
            if len(parts) == 6 and parts[5] == "cancel" and request.method == "POST":
                state = DESCRIBES[stages[at]]["job"]["state"]
                if state in ("completed", "error", "cancelled") or jid in self.cancels:
                    ended = "cancelled" if jid in self.cancels else state
                    message = f"job {jid} has already ended ({ended}): nothing to cancel"
                    return httpx.Response(409, json={"error": "job_ended", "message": message})
                self.cancels.append(jid)
                return httpx.Response(200, json={"id": jid, "state": "cancelled"})
            if len(parts) == 6 and parts[5] == "step" and request.method == "POST":
                gates = DESCRIBES[stages[at]]["gates"]
                if not gates:
                    return httpx.Response(
                        409,
                        json={
                            "error": "not_at_gate",
                            "message": f"job {jid} is not waiting at a gate (state: not open here)",
                        },
                    )
                self.steps.append(jid)
                self.stage[jid] = min(at + 1, len(stages) - 1)
                return httpx.Response(
                    200,
                    json={
                        "id": jid,
                        "opened": gates[0]["name"],
                        "gates": [{"shard": g["shard"], "name": g["name"]} for g in gates],
                    },
                )
            return httpx.Response(200, json=DESCRIBES[stages[at]])
        return super().handler(request)


def serve_job_screens(cluster: FakeJobsCluster, monkeypatch: Any) -> None:
    """Point the job view's own API clients at ``cluster`` (``monkeypatch``: pytest's)."""
    from devstack.client.aio import AsyncNodeClient
    from tui.screens import job as job_screen

    def connect(api: str, timeout: float = 10.0) -> AsyncNodeClient:
        return AsyncNodeClient(api, timeout=timeout, transport=cluster.transport())

    monkeypatch.setattr(job_screen, "connect", connect)


def fake_source(cluster: FakeJobsCluster) -> ClusterSource:
    """A source over ``cluster`` whose clocks stand still (deterministic screens)."""
    ticks = itertools.count()
    return ClusterSource(
        targets=cluster.targets(),
        transport=cluster.transport(),
        clock=lambda: NOW,
        timer=lambda: next(ticks) * 0.004,
    )
