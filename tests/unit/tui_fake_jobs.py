"""Jobs described by a real devstack, replayed for the job view's and the form's tests.

``data/tui/describes.json`` holds ``GET /api/v1/jobs/{id}`` answers captured on a real
3-node devstack (what each one is: its ``captured_from``). :func:`describes` gives
them with that cluster's peer ids replaced by those of ``cluster3.json`` (node-0 is
node-0, ...) and their clocks moved so each job was created
:data:`CREATED_AGO` seconds before ``tui_fake.NOW``, so they read as jobs of the
cluster :class:`~tests.unit.tui_fake.FakeCluster` replays; and the hand-made answers
of jobs escalated and spot-checked (:mod:`tests.unit.tui_fake_checks`).

:class:`FakeJobsCluster` serves them on node-0 (the requester), as a step-mode job
walks through its gates: each ``POST /api/v1/jobs/{id}/step`` moves the job to its
next captured stage, and a job at no gate answers 409 as the node does. It also
answers ``GET /api/v1/images`` and ``POST /api/v1/jobs`` (recording the specs).

``GET /api/v1/jobs/{id}/logs`` is served from an :class:`OutputFeed` per job: a test
puts the records it wants in :attr:`FakeJobsCluster.outputs` before the job view asks
(and more while it follows); otherwise the first request makes one from the captured
stage's stdout previews (one line record per line, in the order of its executions),
ended at once if the stage has ended, else held open until a step ends the job.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.unit import tui_fake_checks
from tests.unit.tui_fake import CLUSTER, NOW, FakeCluster
from tui.source import ClusterSource

TERMINAL = ("completed", "error", "cancelled")
DATA = Path(__file__).parent / "data" / "tui" / "describes.json"
CREATED_AGO = 30.0
_TIMES = ("at", "created_at", "updated_at")

#: The stages of each captured job, in order (``step`` moves to the next).
STAGES: dict[str, tuple[str, ...]] = {
    "step": ("step_verdict", "step_publish", "step_completed"),
    "sharded": ("sharded_verdict", "sharded_publish", "sharded_completed"),
    "split": ("split_verdict", "split_error"),
    "simple": ("simple_completed",),
    **tui_fake_checks.STAGES,
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
    return shifted | tui_fake_checks.describes()


DESCRIBES = describes()


def job_id(job: str) -> str:
    """The id of captured job ``job`` (a key of :data:`STAGES`)."""
    return str(DESCRIBES[STAGES[job][0]]["job"]["job"]["id"])


class OutputFeed:
    """One job's output stream as the fake requester serves it: every follower gets
    all the records put so far, then each one put later, until the end record (or
    :meth:`hang_up`, which ends the open streams without one)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.followed = 0  # requests served
        #: What the next requests answer instead of a stream: (status, error body).
        self.refusals: list[tuple[int, dict[str, Any]]] = []
        self._changed: asyncio.Event | None = None
        self._hung_up = 0
        self._seq = itertools.count(1)

    def line(
        self, node: str, line: str, *, shard: int = 0, stream: str = "stdout"
    ) -> dict[str, Any]:
        """Put a line record (the next seq); the record."""
        record = {
            "seq": next(self._seq),
            "shard": shard,
            "node": node,
            "time": NOW,
            "stream": stream,
            "line": line,
        }
        self.put(record)
        return record

    def lost(self, node: str, dropped: int, *, shard: int = 0) -> None:
        self.put(
            {"seq": next(self._seq), "shard": shard, "node": node, "time": 0.0, "dropped": dropped}
        )

    def end(self, state: str = "completed") -> None:
        self.put({"state": state, "ended": True})

    @property
    def ended(self) -> bool:
        return bool(self.records) and "ended" in self.records[-1]

    def put(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        self._wake()

    def hang_up(self) -> None:
        """End every stream open now, without an end record."""
        self._hung_up += 1
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def answer(self) -> httpx.Response:
        """What one request gets: a refusal, else the NDJSON stream."""
        self.followed += 1
        if self.refusals:
            status, body = self.refusals.pop(0)
            return httpx.Response(status, json=body)
        return httpx.Response(
            200, content=self._follow(), headers={"content-type": "application/x-ndjson"}
        )

    async def _follow(self) -> AsyncIterator[bytes]:
        sent, hung_up = 0, self._hung_up
        while True:
            if sent < len(self.records):
                found = self.records[sent:]
                sent += len(found)
                yield b"".join(json.dumps(r).encode() + b"\n" for r in found)
                if "ended" in found[-1]:
                    return
                continue
            if self._hung_up != hung_up:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()


def captured_output(describe: Mapping[str, Any]) -> OutputFeed:
    """A feed of a captured stage's stdout previews, ended if the stage has ended."""
    feed = OutputFeed()
    for execution in describe["job"]["executions"]:
        for line in str(execution.get("stdout_preview") or "").splitlines():
            feed.line(execution["node"], line, shard=execution["shard"])
    state = describe["job"]["state"]
    if state in TERMINAL:
        feed.end(state)
    return feed


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
        #: Each job's output stream (made from its stage when first asked, if not here).
        self.outputs: dict[str, OutputFeed] = {}

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
            if len(parts) == 6 and parts[5] == "logs" and request.method == "GET":
                assert request.url.params.get("follow") == "true"
                feed = self.outputs.get(jid)
                if feed is None:
                    feed = self.outputs[jid] = captured_output(DESCRIBES[stages[at]])
                return feed.answer()
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
                state = DESCRIBES[stages[self.stage[jid]]]["job"]["state"]
                feed = self.outputs.get(jid)
                if state in TERMINAL and feed is not None and not feed.ended:
                    feed.end(state)
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
