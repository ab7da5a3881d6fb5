"""Jobs whose shard was escalated or spot-checked, for the job view's tests.

Hand-made, not captured: the captures of ``data/tui/describes.json`` predate
escalations and spot checks. The answers have the shape ``GET /api/v1/jobs/{id}``
gives and the events those of ``node/requester.py`` (``escalated``, ``spot_check``,
``escalation_accepted``, the verdict gate's ``more`` and ``why_more``), on the peers
of ``cluster3.json``, each job created :data:`CREATED_AGO` seconds before
``tui_fake.NOW`` (as the captured jobs). Three nodes bound the stories: a requester
escalates only to nodes that have not run the shard.

- ``escalated`` (:data:`ESCALATED`): ``echo escalated``, concurrency 2, confidence 2.
  node-1's run fails, so one result is below the confidence; the verdict asks for 1
  more run, node-2 gives the same result, and the job completes.
- ``checked`` (:data:`CHECKED`, step mode): ``echo checked``, concurrency 2, every
  unanimous result spot-checked. node-0 and node-1 agree and the verdict asks for a
  spot check (stage ``checked_spot``, at the verdict gate); node-2, a bad actor,
  forges its result and the verdict asks for 1 more run (``checked_escalate``, at
  the verdict gate again); opened, the gate ends the job ``error``, as no node is
  left that has not run the shard (``checked_error``).
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import Any

from tests.unit.tui_fake import CLUSTER, NOW

CREATED_AGO = 30.0
CREATED = NOW - CREATED_AGO
N0, N1, N2 = (node["peer_id"] for node in CLUSTER["nodes"])

#: Each job's stages, in order (``step`` moves to the next).
STAGES: dict[str, tuple[str, ...]] = {
    "escalated": ("escalated_completed",),
    "checked": ("checked_spot", "checked_escalate", "checked_error"),
}


def cid(label: str) -> str:
    """A CIDv1 of a results tree's shape (``bafybei`` and 52 base32 characters)."""
    digest = hashlib.sha256(label.encode()).digest()
    return "bafybei" + base64.b32encode(digest).decode().lower().rstrip("=")[:52]


def _spec(word: str, *, confidence: int, spot_check: float, step: bool) -> dict[str, Any]:
    return {
        "image": "busybox",
        "command": ["echo", word],
        "entrypoint": None,
        "engine": "docker",
        "env": {},
        "timeout": 600.0,
        "resources": {"cpu": 0.0, "memory": 0},
        "deal": {
            "concurrency": 2,
            "confidence": confidence,
            "min_bids": 0,
            "margin": 2,
            "max_extra_runs": 4,
            "spot_check": spot_check,
            "check_newcomers": False,
            "credibility": True,
        },
        "verifier": "deterministic",
        "publisher": "ipfs",
        "network": False,
        "step": step,
        "inputs": [],
        "sharding": None,
    }


class _Job:
    """One hand-made job: its events appended in the requester's order."""

    def __init__(self, job_id: str, spec: dict[str, Any]) -> None:
        self.job_id, self.spec = job_id, spec
        self.events: list[dict[str, Any]] = []
        self.marks: dict[str, int] = {}  # stage -> events so far

    def event(self, kind: str, t: float, shard: int | None = 0, **detail: Any) -> None:
        self.events.append(
            {
                "job_id": self.job_id,
                "kind": kind,
                "at": CREATED + t,
                "node": N0,
                "shard": shard,
                "detail": detail,
            }
        )

    def gate(self, t: float, proposals: dict[str, str], more: int, why: str) -> dict[str, Any]:
        """Record a verdict gate that asks for ``more`` runs; what ``gates`` lists."""
        behind = {
            "proposals": proposals,
            "votes": dict(Counter(proposals.values())),
            "accepted": [],
            "rejected": {},
            "failure": None,
            "more": more,
            "why_more": why,
        }
        self.event("gate", t, state="verifying", gate="verdict", **behind)
        return {"shard": 0, "name": "verdict", **behind}

    def check(self, kind: str, t: float, why: str, more: int, extra: int, first: list[str]) -> None:
        """Record an escalation or a spot check (``kind``) of the proposals so far."""
        votes = Counter(
            e["detail"]["result_id"]
            for e in self.events
            if e["kind"] == "proposed" and "peer" in e["detail"]
        )
        self.event(
            kind,
            t,
            state="bidding",
            reason=why,
            more=more,
            extra_runs=extra,
            max_extra_runs=4,
            first=sorted(first),
            votes=dict(votes),
        )

    def describe(
        self,
        stage: str,
        state: str,
        executions: list[dict[str, Any]],
        *,
        gate: dict[str, Any] | None = None,
        reason: str = "",
        published: str | None = None,
    ) -> dict[str, Any]:
        events = self.events[: self.marks.get(stage, len(self.events))]
        return {
            "job": {
                "job": {
                    "id": self.job_id,
                    "requester": N0,
                    "spec": self.spec,
                    "created_at": CREATED,
                    "shards": 1,
                },
                "state": state,
                "updated_at": events[-1]["at"],
                "reason": reason,
                "executions": executions,
            },
            "requester": N0,
            "node": N0,
            "events": events,
            "shards": [
                {
                    "shard": 0,
                    "cid": published,
                    "providers": [N0, N2] if published else [],
                    "locations": [],
                }
            ],
            "gate": gate,
            "gates": [] if gate is None else [gate],
            "waiting": [],
        }


def _execution(
    job: _Job, node: str, t: float, state: str, result: str | None, stdout: str, **more: Any
) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "shard": 0,
        "node": node,
        "state": state,
        "updated_at": CREATED + t,
        "result_id": result,
        "result_url": None,
        "exit_code": 0 if result else more.get("exit_code"),
        "stdout_preview": stdout,
        "reason": more.get("reason"),
    }


def _first_runs(job: _Job, result: str, failing: str | None = None) -> None:
    """Offered, node-0 and node-1 accepted, and their runs: ``result`` each, or the
    error ``failing`` for node-1."""
    job.event("created", 0.0, None, concurrency=2, shards=1)
    job.event("offered", 0.004, None, state="bidding", window=5.0, round=0, shards=1)
    job.event("bid", 0.018, role="compute")
    job.event("bid_accepted", 0.030, peer=N0)
    job.event("bid_accepted", 0.041, peer=N1)
    job.event("bidding_closed", 0.041, state="running")
    job.event("bid_accepted", 0.045, role="compute")
    job.event("running", 0.061, role="compute")
    job.event("proposed", 0.948, role="compute", result_id=result, exit_code=0)
    job.event("proposed", 0.950, peer=N0, result_id=result, exit_code=0, run_ms=880.4)
    if failing is None:
        job.event("proposed", 0.990, peer=N1, result_id=result, exit_code=0, run_ms=905.1)
    else:
        job.event("compute_error", 0.990, peer=N1, exit_code=1, reason=failing)
    job.event("verifying", 0.991, state="verifying")


# -- escalated: below the confidence, one more run, completed -------------------------------

ESCALATED = _Job(
    "e5ca1a7e-0b1d-4c0e-9a55-000000000001",
    _spec("escalated", confidence=2, spot_check=0.0, step=False),
)
RESULT = cid("escalated")
FAILED_RUN = "the container exited with code 1: docker: Error response from daemon: OOM"
BELOW = "1 proposals: the largest group of equal results has 1, confidence needs 2"
_first_runs(ESCALATED, RESULT, failing=FAILED_RUN)
ESCALATED.check("escalated", 0.995, BELOW, more=1, extra=1, first=[N0])
ESCALATED.event("bid_accepted", 1.020, peer=N2)
ESCALATED.event("escalation_accepted", 1.021, state="running")
ESCALATED.event("proposed", 1.930, peer=N2, result_id=RESULT, exit_code=0, run_ms=884.7)
ESCALATED.event("verifying", 1.931, state="verifying")
ESCALATED.event("results_accepted", 1.934, peer=N0)
ESCALATED.event("results_accepted", 1.935, peer=N2)
ESCALATED.event("results_accepted", 1.936, role="compute")
ESCALATED.event("publishing", 1.940, state="publishing")
ESCALATED.event("published", 2.210, peer=N0, result_id=RESULT)
ESCALATED.event("published", 2.305, peer=N2, result_id=RESULT)
ESCALATED.event("shard_completed", 2.306, state="completed")
ESCALATED.event("completed", 2.310, None, state="completed")

# -- checked: a spot check, a forged result, 1 more run asked, none left --------------------

CHECKED = _Job(
    "c4ec4ed0-5c0f-4fee-b1d0-000000000002",
    _spec("checked", confidence=0, spot_check=1.0, step=True),
)
HONEST, FORGED = cid("checked"), cid("checked, forged")
SPOT_WHY = "a spot check of 2 equal result(s)"
DIFFER_WHY = (
    "3 proposals, 2 different results: the leading result has 1 vote(s) more than the"
    " next, the margin is 2"
)
NONE_LEFT = (
    f"verification accepted no result: {DIFFER_WHY}; settling it needs 1 more run(s) on"
    " nodes that have not run this shard, and only 0 of the 3 have not"
)
_first_runs(CHECKED, HONEST)
SPOT_GATE = CHECKED.gate(0.992, {N0: HONEST, N1: HONEST}, 1, SPOT_WHY)
CHECKED.marks["checked_spot"] = len(CHECKED.events)
CHECKED.event("stepped", 4.100, state="verifying", gate="verdict")
CHECKED.check("spot_check", 4.110, SPOT_WHY, more=1, extra=1, first=[N0, N1])
CHECKED.event("bid_accepted", 4.131, peer=N2)
CHECKED.event("escalation_accepted", 4.132, state="running")
CHECKED.event("proposed", 5.050, peer=N2, result_id=FORGED, exit_code=0, run_ms=871.9)
CHECKED.event("verifying", 5.060, state="verifying")
DIFFER_GATE = CHECKED.gate(5.061, {N0: HONEST, N1: HONEST, N2: FORGED}, 1, DIFFER_WHY)
CHECKED.marks["checked_escalate"] = len(CHECKED.events)
CHECKED.event("stepped", 9.200, state="verifying", gate="verdict")
CHECKED.event("error", 9.204, None, state="error", reason=NONE_LEFT)
CHECKED.event("cancelled", 9.206, None, role="compute", reason=NONE_LEFT)


def describes() -> dict[str, dict[str, Any]]:
    """Every stage's answer by name."""
    ran = [
        _execution(ESCALATED, N0, 0.950, "results_accepted", RESULT, "escalated\n"),
        _execution(ESCALATED, N1, 0.990, "error", None, "", exit_code=1, reason=FAILED_RUN),
        _execution(ESCALATED, N2, 1.930, "results_accepted", RESULT, "escalated\n"),
    ]
    agreed = [
        _execution(CHECKED, N0, 0.950, "proposed", HONEST, "checked\n"),
        _execution(CHECKED, N1, 0.990, "proposed", HONEST, "checked\n"),
    ]
    forged = [
        *agreed,
        _execution(CHECKED, N2, 5.050, "proposed", FORGED, "checked\nforged by a bad actor\n"),
    ]
    return {
        "escalated_completed": ESCALATED.describe(
            "escalated_completed", "completed", ran, published=RESULT
        ),
        "checked_spot": CHECKED.describe("checked_spot", "verifying", agreed, gate=SPOT_GATE),
        "checked_escalate": CHECKED.describe(
            "checked_escalate", "verifying", forged, gate=DIFFER_GATE
        ),
        "checked_error": CHECKED.describe("checked_error", "error", forged, reason=NONE_LEFT),
    }
