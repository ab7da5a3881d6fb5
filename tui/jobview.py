"""What the job view shows, computed from one ``GET /api/v1/jobs/{id}`` answer.

This module owns the pure part of the job view (:mod:`tui.screens.job`): the timeline
of every event with the latency of the phase it ends (:func:`timeline`), the phases of
each run, one per (shard, node) (:func:`run_phases`), of each shard
(:func:`shard_phases`), what waits behind a step-mode gate (:func:`gate_summaries`),
each shard's results (:func:`shard_results`) and the job's own line
(:func:`job_summary`). Every function takes the describe answer as decoded JSON and
returns frozen records; a figure the events do not give is ``None``, never a guess.
Nothing here imports Textual or does I/O.

The answer (``node/api.py``): ``{"job": {"job": {id, requester, spec, created_at,
shards}, state, reason, updated_at, executions: [...]}, "requester", "node",
"events": [{kind, at, node, shard, detail}], "shards": [{shard, cid, providers,
locations}], "gate", "gates": [{shard, name, ...what is behind it}]}``. Events are
the requester's log, in the order it appended them; those its own compute part
recorded carry ``detail.role == "compute"``, the others name the run's node in
``detail.peer``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tui.format import short_id

Describe = Mapping[str, Any]
"""A decoded ``GET /api/v1/jobs/{id}`` answer."""

TERMINAL_STATES = frozenset({"completed", "error", "cancelled"})

#: The phases of README, job lifecycle, in order; an event belongs to one (:data:`PHASE_OF`).
PHASES = ("submit", "bids", "accepted", "running", "proposed", "verdict", "published", "end")

PHASE_OF: Mapping[str, str] = {
    "created": "submit",
    "announced": "submit",
    "offered": "submit",
    "offer_declined": "bids",
    "offer_undelivered": "bids",
    "gossip_fallback": "bids",
    "rebid": "bids",
    "queued": "bids",
    "bid": "bids",
    "bid_refused": "bids",
    "bid_accepted": "accepted",
    "bid_rejected": "accepted",
    "bidding_closed": "accepted",
    "retry_accepted": "accepted",
    "escalation_accepted": "accepted",
    "lost": "running",
    "retry": "running",
    "stopped": "running",
    "running": "running",
    "proposed": "proposed",
    "compute_error": "proposed",
    "verifying": "verdict",
    "results_accepted": "verdict",
    "results_rejected": "verdict",
    "rerun": "verdict",
    "escalated": "verdict",
    "spot_check": "verdict",
    "publishing": "published",
    "published": "published",
    "shard_completed": "published",
    "completed": "end",
    "error": "end",
    "cancelled": "end",
}

#: What opening each gate does, for the key's label.
GATE_ACTION: Mapping[str, str] = {"verdict": "announce the verdict", "publish": "publish"}

#: Events that run a shard on more nodes besides those that ran it (README,
#: verification: escalation): a disagreement escalated, or a unanimous result checked.
CHECK_KINDS = ("escalated", "spot_check")


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _since(at: float | None, start: float | None) -> float | None:
    """Seconds from ``start`` to ``at``; None unless both are known."""
    if at is None or start is None:
        return None
    return max(0.0, at - start)


def _record(describe: Describe) -> Mapping[str, Any]:
    return describe.get("job") or {}


def _job(describe: Describe) -> Mapping[str, Any]:
    return _record(describe).get("job") or {}


def created_at(describe: Describe) -> float | None:
    return _float(_job(describe).get("created_at"))


def _events(describe: Describe) -> list[Mapping[str, Any]]:
    return [e for e in describe.get("events") or () if isinstance(e, Mapping)]


def _detail(event: Mapping[str, Any]) -> Mapping[str, Any]:
    detail = event.get("detail")
    return detail if isinstance(detail, Mapping) else {}


def _is_compute(event: Mapping[str, Any]) -> bool:
    return _detail(event).get("role") == "compute"


def _subject(event: Mapping[str, Any]) -> str:
    """The node an event is about: the run's node (``detail.peer``) for the requester's
    events about a run, else the node that recorded it."""
    peer = _detail(event).get("peer")
    return str(peer) if peer else str(event.get("node") or "")


def _shard(event: Mapping[str, Any]) -> int | None:
    shard = event.get("shard")
    return shard if isinstance(shard, int) and not isinstance(shard, bool) else None


def name_of(peer: str, names: Mapping[str, str] | None = None) -> str:
    """A node's devstack name (``node-3``) if ``names`` knows it, else its peer id's tail."""
    if not peer:
        return ""
    return (names or {}).get(peer) or short_id(peer)


def short_cid(cid: str, tail: int = 6) -> str:
    """``bafy…t63se``: a CID's prefix and its tail, which is what tells two apart."""
    if len(cid) <= 4 + tail + 1:
        return cid
    return f"{cid[:4]}…{cid[-tail:]}"


# -- the timeline -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One event of the job, with the latency of the phase it ends.

    ``took_s`` is measured from the event that started the phase (see
    :func:`timeline`); ``offset_s`` from the job's creation."""

    seq: int  # its place in the requester's log: the row's key, and the order
    at: float
    offset_s: float | None
    kind: str
    phase: str
    shard: int | None
    node: str  # the run's node (peer id), or the node that recorded it
    node_name: str
    role: str  # "requester", or "compute" for the requester's own compute part
    took_s: float | None
    detail: str

    @property
    def key(self) -> str:
        return str(self.seq)

    @property
    def search_text(self) -> str:
        """What the timeline's filter matches: kind, phase, shard, node, role, detail."""
        shard = "" if self.shard is None else f"shard {self.shard} s{self.shard}"
        return (
            f"{self.kind} {self.phase} {shard} {self.node_name} {self.node} {self.role}"
            f" {self.detail}"
        ).lower()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def counted(count: int, noun: str = "run") -> str:
    """``1 run``, ``2 runs``; ``2 more runs`` with ``noun="more run"``."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def extra_runs_text(detail: Mapping[str, Any]) -> str:
    """``+2 runs (extra 3 of max 4)``: what an escalation or a spot check added."""
    more, extra, cap = (_int(detail.get(k)) for k in ("more", "extra_runs", "max_extra_runs"))
    text = f"+{counted(more)}" if more is not None else "+? runs"
    if extra is not None:
        text += f" (extra {extra} of max {cap if cap is not None else '?'})"
    return text


def _detail_text(kind: str, detail: Mapping[str, Any]) -> str:
    """What the event says beyond its kind, node and shard, in a few words."""
    parts = []
    if kind == "created":
        parts.append(f"concurrency {detail.get('concurrency', '?')}")
        parts.append(f"{detail.get('shards', '?')} shard(s)")
    elif kind == "gossip_fallback":
        parts.append(f"{detail.get('offered', '?')} offered, none free: gossiped")
    elif kind in ("announced", "offered", "rebid"):
        if "round" in detail:
            parts.append(f"round {detail['round']}")
        if "window" in detail:
            parts.append(f"window {detail['window']:g}s")
        if "accepted" in detail:
            parts.append(f"{detail['accepted']} accepted so far")
    elif kind == "rerun":
        parts.append(f"attempt {detail.get('attempt', '?')}")
    elif kind in CHECK_KINDS:
        parts.append(extra_runs_text(detail))
    elif kind in ("gate", "stepped"):
        parts.append(f"gate {detail.get('gate', '?')}")
        more = _int(detail.get("more"))
        if kind == "gate" and more:
            parts.append(f"asks for {counted(more, 'more run')}")
    if detail.get("result_id"):
        parts.append(short_cid(str(detail["result_id"])))
    if detail.get("exit_code") not in (None, 0):
        parts.append(f"exit {detail['exit_code']}")
    if isinstance(detail.get("run_ms"), int | float):
        parts.append(f"run {detail['run_ms'] / 1000:.2f}s")
    if detail.get("reason"):
        parts.append(str(detail["reason"]))
    return " · ".join(parts)


def timeline(describe: Describe, names: Mapping[str, str] | None = None) -> list[TimelineRow]:
    """Every event of the job, in the requester's order, with its phase latency;
    ``names`` maps peer ids to the names shown (see :func:`name_of`).

    An event's ``took_s`` is the time since the event that started its phase:

    - ``announced``, and the job's end (``completed``, ``error``, ``cancelled``): since
      the job was created (the end's is the job's total);
    - a bid's answer (``bid_accepted``, ``bid_rejected``), ``bidding_closed``,
      ``escalation_accepted`` and ``rebid``: since the shard's bidding round began
      (``announced``, ``rebid``, ``rerun``, ``escalated`` or ``spot_check``);
    - ``proposed`` and ``compute_error`` of a node: since its bid was accepted;
    - ``verifying``: since bidding closed, or since the extra runs were accepted (the
      runs); ``rerun``, ``escalated`` and ``spot_check``: since ``verifying``;
    - the verdict (``results_accepted``, ``results_rejected``) and ``publishing``: since
      ``verifying`` (in step mode this includes the time held at the gates);
    - ``published`` of a node: since its results were accepted (or ``publishing``);
      ``shard_completed``: since ``publishing``;
    - ``stepped``: how long the gate held, since its ``gate`` event or, when the log has
      none, since the shard's event before it;
    - an event of the requester's own compute part: since its previous one for the
      same shard (bid → accepted → running → proposed → published).
    """
    created = created_at(describe)
    round_start: dict[int | None, float] = {}
    accepted_at: dict[tuple[int | None, str], float] = {}
    verdict_at: dict[tuple[int | None, str], float] = {}
    closed_at: dict[int | None, float] = {}
    verifying_at: dict[int | None, float] = {}
    publishing_at: dict[int | None, float] = {}
    gate_at: dict[tuple[int | None, str], float] = {}
    previous: dict[int | None, float] = {}  # the requester's last event of each shard
    compute_previous: dict[tuple[int | None, str], float] = {}

    rows = []
    for seq, event in enumerate(_events(describe)):
        kind = str(event.get("kind") or "")
        at = _float(event.get("at"))
        if at is None:
            continue
        detail = _detail(event)
        shard = _shard(event)
        node = _subject(event)
        compute = _is_compute(event)
        took: float | None = None
        phase = PHASE_OF.get(kind, "")
        if compute:
            key = (shard, node)
            began = created if shard is None else round_start.get(shard, round_start.get(None))
            took = _since(at, compute_previous.get(key, began))
            compute_previous[key] = at
            if kind == "error":
                phase = "proposed"
        else:
            start = round_start.get(shard, round_start.get(None))
            if kind in ("announced", "offered"):
                took = _since(at, created)
                round_start[None] = at
            elif kind in ("bid_accepted", "bid_rejected"):
                took = _since(at, start)
                if kind == "bid_accepted":
                    accepted_at[(shard, node)] = at
            elif kind in ("bidding_closed", "escalation_accepted"):
                took = _since(at, start)
                closed_at[shard] = at
            elif kind in ("rebid", "gossip_fallback"):
                took = _since(at, start)
                round_start[shard] = at
            elif kind in ("proposed", "compute_error"):
                took = _since(at, accepted_at.get((shard, node)))
            elif kind == "verifying":
                took = _since(at, closed_at.get(shard))
                verifying_at[shard] = at
            elif kind == "rerun" or kind in CHECK_KINDS:
                took = _since(at, verifying_at.get(shard))
                round_start[shard] = at
            elif kind in ("results_accepted", "results_rejected"):
                took = _since(at, verifying_at.get(shard))
                verdict_at[(shard, node)] = at
            elif kind == "publishing":
                took = _since(at, verifying_at.get(shard))
                publishing_at[shard] = at
            elif kind == "published":
                took = _since(at, verdict_at.get((shard, node), publishing_at.get(shard)))
            elif kind == "shard_completed":
                took = _since(at, publishing_at.get(shard))
            elif kind == "gate":
                gate = str(detail.get("gate") or "")
                gate_at[(shard, gate)] = at
                took = _since(at, previous.get(shard))
                phase = "verdict" if gate == "verdict" else "published"
            elif kind == "stepped":
                gate = str(detail.get("gate") or "")
                took = _since(at, gate_at.get((shard, gate), previous.get(shard)))
                phase = "verdict" if gate == "verdict" else "published"
            elif kind == "error" and shard is not None:
                took = _since(at, accepted_at.get((shard, node)))
                phase = "proposed"
            elif shard is None and kind in ("completed", "error", "cancelled"):
                took = _since(at, created)
            previous[shard] = at
        rows.append(
            TimelineRow(
                seq=seq,
                at=at,
                offset_s=_since(at, created),
                kind=kind,
                phase=phase,
                shard=shard,
                node=node,
                node_name=name_of(node, names),
                role="compute" if compute else "requester",
                took_s=took,
                detail=_detail_text(kind, detail),
            )
        )
    return rows


# -- the runs: one per (shard, node) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunPhases:
    """One node's run of one shard, as the requester saw it.

    - ``bid_s``: the shard's bidding round began → the node's bid was answered
      (accepted, or rejected: see ``state``);
    - ``run_s``: the container's run, as the node measured it;
    - ``proposed_s``: its bid accepted → its result proposed (or its error);
    - ``verdict_s``: the shard's verification began → the node's verdict (in step
      mode, the time held at the gates is included: ``gated``);
    - ``published_s``: its results accepted → it reported them published;
    - ``total_s``: the job created → the run's last event.
    """

    shard: int
    node: str
    node_name: str
    state: str
    bid_s: float | None = None
    run_s: float | None = None
    proposed_s: float | None = None
    verdict_s: float | None = None
    published_s: float | None = None
    total_s: float | None = None
    result_id: str = ""
    exit_code: int | None = None
    reason: str = ""
    gated: bool = False

    @property
    def key(self) -> str:
        return f"{self.shard}/{self.node}"


def _executions(describe: Describe) -> list[Mapping[str, Any]]:
    return [e for e in _record(describe).get("executions") or () if isinstance(e, Mapping)]


def is_step(describe: Describe) -> bool:
    return bool((_job(describe).get("spec") or {}).get("step"))


def run_phases(describe: Describe, names: Mapping[str, str] | None = None) -> list[RunPhases]:
    """Every (shard, node) that bid or ran, ordered by shard then first appearance."""
    created = created_at(describe)
    step = is_step(describe)
    state = {
        (e.get("shard"), str(e.get("node"))): e
        for e in _executions(describe)
        if isinstance(e.get("shard"), int)
    }
    round_start: dict[int | None, float] = {}
    verifying_at: dict[int | None, float] = {}
    runs: dict[tuple[int, str], dict[str, Any]] = {}

    def run(shard: int, node: str) -> dict[str, Any]:
        return runs.setdefault((shard, node), {})

    for event in _events(describe):
        if _is_compute(event):
            continue
        kind = str(event.get("kind") or "")
        at = _float(event.get("at"))
        shard = _shard(event)
        if at is None:
            continue
        if kind in ("announced", "offered"):
            round_start[None] = at
            continue
        if shard is None:
            continue
        if kind in ("rebid", "rerun", "gossip_fallback", *CHECK_KINDS):
            round_start[shard] = at
            continue
        if kind == "verifying":
            verifying_at[shard] = at
            continue
        peer = _detail(event).get("peer")
        if not peer:
            continue
        r = run(shard, str(peer))
        r["last"] = at
        if kind in ("bid_accepted", "bid_rejected"):
            r["answered"] = at
            r["bid_s"] = _since(at, round_start.get(shard, round_start.get(None)))
        elif kind in ("proposed", "compute_error", "error"):
            r["proposed_s"] = _since(at, r.get("answered"))
            run_ms = _float(_detail(event).get("run_ms"))
            if run_ms is not None:
                r["run_s"] = run_ms / 1000
        elif kind in ("results_accepted", "results_rejected"):
            r["verdict"] = at
            r["verdict_s"] = _since(at, verifying_at.get(shard))
        elif kind == "published":
            r["published_s"] = _since(at, r.get("verdict"))

    # Executions the events do not show (none so far) still get a row.
    for shard, node in state:
        if isinstance(shard, int):
            run(shard, node)

    rows = []
    for (shard, node), r in runs.items():
        execution = state.get((shard, node), {})
        exit_code = execution.get("exit_code")
        rows.append(
            RunPhases(
                shard=shard,
                node=node,
                node_name=name_of(node, names),
                state=str(execution.get("state") or ""),
                bid_s=r.get("bid_s"),
                run_s=r.get("run_s"),
                proposed_s=r.get("proposed_s"),
                verdict_s=r.get("verdict_s"),
                published_s=r.get("published_s"),
                total_s=_since(r.get("last"), created),
                result_id=str(execution.get("result_id") or ""),
                exit_code=exit_code if isinstance(exit_code, int) else None,
                reason=str(execution.get("reason") or ""),
                gated=step and r.get("verdict_s") is not None,
            )
        )
    order = {key: i for i, key in enumerate(runs)}
    rows.sort(key=lambda r: (r.shard, order[(r.shard, r.node)]))
    return rows


# -- the shards ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardPhases:
    """One shard's phases (of its last attempt when it was re-run):

    ``first_bid_s`` its round began → the first bid answered; ``accepted_s`` → bidding
    closed (every run accepted); ``runs_s`` bidding closed → the last proposal or error;
    ``verdict_s`` verification began → the verdict (gates included in step mode);
    ``published_s`` publication began → the shard completed; ``total_s`` the job
    created → the shard completed (or the job ended). ``extra_runs``: the runs its
    ``escalations`` and ``spot_checks`` added on fresh nodes in that attempt (its
    ``runs_s`` then spans them)."""

    shard: int
    first_bid_s: float | None = None
    accepted_s: float | None = None
    runs_s: float | None = None
    verdict_s: float | None = None
    published_s: float | None = None
    total_s: float | None = None
    attempts: int = 1
    extra_runs: int = 0
    escalations: int = 0
    spot_checks: int = 0


def shard_phases(describe: Describe) -> list[ShardPhases]:
    created = created_at(describe)
    count = _job(describe).get("shards")
    shards = count if isinstance(count, int) and count > 0 else 1
    start: dict[int, float] = {}
    marks: dict[int, dict[str, Any]] = {i: {"attempts": 1} for i in range(shards)}
    ended: float | None = None
    for event in _events(describe):
        if _is_compute(event):
            continue
        kind = str(event.get("kind") or "")
        at = _float(event.get("at"))
        shard = _shard(event)
        if at is None:
            continue
        if shard is None:
            if kind in ("announced", "offered"):
                for i in range(shards):
                    start.setdefault(i, at)
            elif kind in ("completed", "error", "cancelled"):
                ended = at
            continue
        m = marks.setdefault(shard, {"attempts": 1})
        if kind == "rerun":
            start[shard] = at
            m.clear()
            m["attempts"] = int(_detail(event).get("attempt") or 0) + 1
        elif kind == "rebid":
            pass  # the same attempt: its first bid and close count from the first round
        elif kind in CHECK_KINDS:
            # The same attempt too; the event carries the attempt's running total.
            detail = _detail(event)
            total = _int(detail.get("extra_runs"))
            more = _int(detail.get("more")) or 0
            m["extra_runs"] = total if total is not None else m.get("extra_runs", 0) + more
            m[kind] = m.get(kind, 0) + 1
        elif kind in ("bid_accepted", "bid_rejected"):
            m.setdefault("first_bid", at)
        elif kind == "bidding_closed":
            m["closed"] = at
        elif kind in ("proposed", "compute_error"):
            m["last_answer"] = at
        elif kind == "verifying":
            m["verifying"] = at
        elif kind in ("results_accepted", "results_rejected"):
            m.setdefault("verdict", at)
        elif kind == "publishing":
            m["publishing"] = at
        elif kind == "shard_completed":
            m["completed"] = at
    rows = []
    for shard in sorted(marks):
        m = marks[shard]
        began = start.get(shard)
        done = m.get("completed")
        rows.append(
            ShardPhases(
                shard=shard,
                first_bid_s=_since(m.get("first_bid"), began),
                accepted_s=_since(m.get("closed"), began),
                runs_s=_since(m.get("last_answer"), m.get("closed")),
                verdict_s=_since(m.get("verdict"), m.get("verifying")),
                published_s=_since(done, m.get("publishing")),
                total_s=_since(done if done is not None else ended, created),
                attempts=m.get("attempts", 1),
                extra_runs=m.get("extra_runs", 0),
                escalations=m.get("escalated", 0),
                spot_checks=m.get("spot_check", 0),
            )
        )
    return rows


# -- the gates ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoteGroup:
    """Proposals of one result CID at a verdict gate."""

    cid: str
    votes: int
    nodes: tuple[str, ...]
    accepted: bool


@dataclass(frozen=True, slots=True)
class GateSummary:
    """What waits behind one shard's gate.

    At the ``verdict`` gate: the proposals grouped by result CID, most votes first
    (``groups``), the nodes the verdict accepts and rejects (with why), and why no
    result won (``failure``); or, when ``more`` > 0, that the verdict asks for that
    many more runs on fresh nodes first (``why_more``), so it accepts and rejects
    nobody yet. At the ``publish`` gate: which node publishes which CID
    (``results``)."""

    shard: int
    name: str
    groups: tuple[VoteGroup, ...] = ()
    accepted: tuple[str, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()
    failure: str | None = None
    results: tuple[tuple[str, str], ...] = ()
    more: int = 0
    why_more: str | None = None

    @property
    def action(self) -> str:
        """What opening this gate does."""
        if self.name == "verdict" and self.more:
            return f"run the shard on {counted(self.more, 'more node')}"
        return GATE_ACTION.get(self.name, f"open the {self.name} gate")

    @property
    def to_publish(self) -> tuple[str, ...]:
        """The distinct CIDs the publish gate is about to publish."""
        return tuple(dict.fromkeys(cid for _, cid in self.results))


def _gate(raw: Mapping[str, Any]) -> GateSummary | None:
    shard = raw.get("shard")
    if not isinstance(shard, int):
        return None
    name = str(raw.get("name") or "")
    proposals = raw.get("proposals") if isinstance(raw.get("proposals"), Mapping) else {}
    votes = raw.get("votes") if isinstance(raw.get("votes"), Mapping) else {}
    accepted = tuple(str(n) for n in raw.get("accepted") or ())
    rejected_raw = raw.get("rejected") if isinstance(raw.get("rejected"), Mapping) else {}
    results_raw = raw.get("results") if isinstance(raw.get("results"), Mapping) else {}
    by_cid: dict[str, list[str]] = {}
    for node, cid in proposals.items():
        by_cid.setdefault(str(cid), []).append(str(node))
    for cid in votes:
        by_cid.setdefault(str(cid), [])
    accepted_set = set(accepted)
    groups = [
        VoteGroup(
            cid=cid,
            votes=int(votes.get(cid, len(nodes))),
            nodes=tuple(sorted(nodes)),
            accepted=bool(nodes) and all(n in accepted_set for n in nodes),
        )
        for cid, nodes in by_cid.items()
    ]
    groups.sort(key=lambda g: (-g.votes, g.cid))
    failure = raw.get("failure")
    why_more = raw.get("why_more")
    return GateSummary(
        shard=shard,
        name=name,
        groups=tuple(groups),
        accepted=tuple(sorted(accepted)),
        rejected=tuple(sorted((str(n), str(r)) for n, r in rejected_raw.items())),
        failure=str(failure) if failure else None,
        results=tuple(sorted((str(n), str(c)) for n, c in results_raw.items())),
        more=max(0, _int(raw.get("more")) or 0),
        why_more=str(why_more) if why_more else None,
    )


def gate_summaries(describe: Describe) -> list[GateSummary]:
    """The gates the job waits at now, by shard (empty unless it waits at one)."""
    gates = [_gate(g) for g in describe.get("gates") or () if isinstance(g, Mapping)]
    found = [g for g in gates if g is not None]
    if not found and isinstance(describe.get("gate"), Mapping):
        only = _gate(describe["gate"])
        found = [only] if only is not None else []
    return sorted(found, key=lambda g: g.shard)


# -- results and the job itself -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardResult:
    """A shard's result: the CID published (None until it is) and who holds it, and
    the stdout preview of a run that produced it (or, before a verdict, of the first
    run that proposed; ``verified`` says which)."""

    shard: int
    cid: str | None
    providers: tuple[str, ...]
    locations: tuple[str, ...]
    stdout: str | None
    exit_code: int | None
    from_node: str
    verified: bool


def shard_results(describe: Describe) -> list[ShardResult]:
    executions = _executions(describe)
    rows = []
    for raw in describe.get("shards") or ():
        if not isinstance(raw, Mapping) or not isinstance(raw.get("shard"), int):
            continue
        shard = raw["shard"]
        cid = raw.get("cid") or None
        mine = [e for e in executions if e.get("shard") == shard and e.get("result_id")]
        winners = [e for e in mine if cid and e.get("result_id") == cid]
        chosen = (winners or mine or [None])[0]
        exit_code = chosen.get("exit_code") if chosen else None
        rows.append(
            ShardResult(
                shard=shard,
                cid=str(cid) if cid else None,
                providers=tuple(str(p) for p in raw.get("providers") or ()),
                locations=tuple(str(loc) for loc in raw.get("locations") or ()),
                stdout=chosen.get("stdout_preview") if chosen else None,
                exit_code=exit_code if isinstance(exit_code, int) else None,
                from_node=str(chosen.get("node") or "") if chosen else "",
                verified=bool(winners),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    state: str
    reason: str
    requester: str
    image: str
    engine: str
    command: str  # as a shell would read it back
    concurrency: int | None
    confidence: int | None
    verifier: str
    publisher: str
    step: bool
    shards: int
    inputs: tuple[str, ...]  # CID:path
    sharding: str  # "GLOB, batch B", or ""
    created_at: float | None
    updated_at: float | None
    # Why shards do not run yet, one line each ("shard 0: queued: …"), from the requester.
    waiting: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def total_s(self) -> float | None:
        """Submission to end, once it ended."""
        return _since(self.updated_at, self.created_at) if self.terminal else None


def job_summary(describe: Describe) -> JobSummary:
    record, job = _record(describe), _job(describe)
    spec = job.get("spec") or {}
    deal = spec.get("deal") or {}
    words = list(spec.get("entrypoint") or ()) + list(spec.get("command") or ())
    sharding = spec.get("sharding") or None
    shards = job.get("shards")
    return JobSummary(
        job_id=str(job.get("id") or ""),
        state=str(record.get("state") or ""),
        reason=str(record.get("reason") or ""),
        requester=str(job.get("requester") or describe.get("requester") or ""),
        image=str(spec.get("image") or ""),
        engine=str(spec.get("engine") or "docker"),
        command=shlex.join(str(w) for w in words),
        concurrency=deal.get("concurrency"),
        confidence=deal.get("confidence"),
        verifier=str(spec.get("verifier") or ""),
        publisher=str(spec.get("publisher") or ""),
        step=bool(spec.get("step")),
        shards=shards if isinstance(shards, int) else 1,
        inputs=tuple(f"{i.get('cid')}:{i.get('path')}" for i in spec.get("inputs") or ()),
        sharding=(
            f"{sharding.get('glob_pattern')}, batch {sharding.get('batch_size')}"
            if isinstance(sharding, Mapping)
            else ""
        ),
        created_at=_float(job.get("created_at")),
        updated_at=_float(record.get("updated_at")),
        waiting=tuple(
            f"shard {w.get('shard')}: {w.get('why')}"
            for w in describe.get("waiting") or ()
            if isinstance(w, Mapping)
        ),
    )
