"""Where a shard stood when its requester stopped, read back from the requester's
records (README, failures: a restarted requester resumes).

A requester records every step of a job as an event, and each node's part in each
shard as an execution row (its latest state). :func:`shard_progress` reads them
back into what the requester must know to go on: which nodes run the shard in its
current attempt, what they proposed, which results were accepted and published,
and so the stage the shard's course resumes at. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from node.models import Execution, ExecutionState, JobEvent

Stage = Literal["bids", "results", "publish", "done"]

_PROPOSED_OR_LATER = (
    ExecutionState.PROPOSED,
    ExecutionState.RESULTS_ACCEPTED,
    ExecutionState.RESULTS_REJECTED,
    ExecutionState.PUBLISHED,
)
_RESULTS_ACCEPTED = (ExecutionState.RESULTS_ACCEPTED, ExecutionState.PUBLISHED)


@dataclass(frozen=True)
class ShardProgress:
    """One shard as its records tell it. ``accepted``: the nodes running its current
    attempt; ``tried``: nodes of earlier attempts or given up on (they may not run
    it again); ``proposals``/``errors``/``results_accepted``/``published`` of the
    accepted nodes; ``retries`` and ``attempt`` so far; ``stage``: where its course
    goes on (``done`` when it completed)."""

    index: int
    stage: Stage
    accepted: frozenset[str] = frozenset()
    tried: frozenset[str] = frozenset()
    proposals: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    results_accepted: frozenset[str] = frozenset()
    published: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    attempt: int = 0
    extra: int = 0
    """Runs added on fresh nodes by escalations and spot checks in this attempt."""
    first_runs: frozenset[str] | None = None
    """The proposers before the first of them (None if there was none)."""


def shard_progress(
    index: int, requester: str, executions: Iterable[Execution], events: Iterable[JobEvent]
) -> ShardProgress:
    """Read shard ``index`` back from the job's ``executions`` and ``events`` (in the
    order they were recorded); ``requester`` is the node that recorded them (events
    of its own compute part are not the requester's)."""
    accepted: set[str] = set()
    tried: set[str] = set()
    retries = attempt = extra = 0
    first_runs: frozenset[str] | None = None
    completed = False
    for event in events:
        if event.shard != index or event.node != requester or event.detail.get("role"):
            continue
        peer = str(event.detail.get("peer", ""))
        match event.kind:
            case "bid_accepted":
                accepted.add(peer)
            case "error" if peer:  # the acceptance never reached the bidder
                accepted.discard(peer)
            case "retry":
                retries += 1
                accepted.discard(peer)
                tried.add(peer)
            case "rerun":
                attempt += 1
                tried |= accepted
                accepted = set()
                extra, first_runs = 0, None
            case "escalated" | "spot_check":
                extra += int(event.detail.get("more", 0))
                if first_runs is None:
                    first_runs = frozenset(map(str, event.detail.get("first", ())))
            case "shard_completed":
                completed = True
    rows = [e for e in executions if e.shard == index and e.node in accepted]
    proposals = {e.node: e.result_id for e in rows if e.state in _PROPOSED_OR_LATER and e.result_id}
    errors = {e.node: e.reason or "failed" for e in rows if e.state is ExecutionState.ERROR}
    results_accepted = frozenset(e.node for e in rows if e.state in _RESULTS_ACCEPTED)
    published = {e.node: e.result_url or "" for e in rows if e.state is ExecutionState.PUBLISHED}
    stage: Stage
    if completed:
        stage = "done"
    elif results_accepted:
        stage = "publish"
    elif accepted:
        stage = "results"
    else:
        stage = "bids"
    return ShardProgress(
        index=index,
        stage=stage,
        accepted=frozenset(accepted),
        tried=frozenset(tried),
        proposals=proposals,
        errors=errors,
        results_accepted=results_accepted,
        published=published,
        retries=retries,
        attempt=attempt,
        extra=extra,
        first_runs=first_runs,
    )
