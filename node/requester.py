"""The requester role: owns the jobs submitted to this node, from announce to verdict.

For each job it announces it on gossip, holds the bids until ``max(concurrency,
min_bids)`` have come, accepts the first ``concurrency`` of them and rejects the
rest, waits for their proposals or errors, asks the job's
verifier, tells each compute node the verdict, and waits for the accepted results
to be published. Every step is an event in the store; every failure ends the job
``error`` with a reason a user can read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from node import messages
from node.bidder import wanted_bids
from node.context import NodeContext
from node.messages import Ack, Message
from node.metrics import Phase
from node.models import (
    Execution,
    ExecutionState,
    Job,
    JobSpec,
    JobState,
    new_job_id,
    now,
)
from node.verifiers import VERIFIERS, Proposal

log = logging.getLogger(__name__)

BID_WINDOW_S = 5.0
# Rounds of bidding before a job fails for want of bids; each window doubles, so
# the default waits 5 + 10 + 20 s for a busy cluster to free a slot.
MAX_BID_ROUNDS = 3
# Time allowed beyond the job's own timeout for proposals to arrive.
RESULTS_GRACE_S = 30.0
PUBLISH_TIMEOUT_S = 60.0


class _Signal:
    """Wakes every waiter when the job's state changes."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._event.wait()


@dataclass(frozen=True, slots=True)
class RequesterStatistics:
    """The jobs this node requested: ``open_jobs`` not ended yet; ``completed`` and
    ``failed`` (ended ``error``) since the node started; ``bids_received`` on them,
    retries of a bid counted once."""

    open_jobs: int
    bids_received: int
    completed: int
    failed: int


@dataclass
class _OpenJob:
    job: Job
    started: float  # trio clock at submission: what the phase latencies count from
    state: JobState = JobState.BIDDING
    bidders: set[str] = field(default_factory=set)
    held: list[str] = field(default_factory=list)  # bids waiting for min_bids, in order
    decided: bool = False  # enough bids came: later ones are answered at once
    accepted: set[str] = field(default_factory=set)
    proposals: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    results_accepted: set[str] = field(default_factory=set)
    published: dict[str, str] = field(default_factory=dict)
    changed: _Signal = field(default_factory=_Signal)
    waited: float = 0.0  # seconds of bid windows that passed without enough bids
    verdict_at: float = 0.0  # trio clock when the accepted results were told to publish
    gate: tuple[str, dict[str, object]] | None = None  # step mode: where it waits, what for
    stepped: trio.Event = field(default_factory=trio.Event)
    reached: set[Phase] = field(default_factory=set)  # phases observed, once each

    @property
    def concurrency(self) -> int:
        return self.job.spec.deal.concurrency

    @property
    def wanted(self) -> int:
        return wanted_bids(self.job)

    def settled(self) -> bool:
        return all(n in self.proposals or n in self.errors for n in self.accepted)


class Requester:
    """Drives the jobs submitted to this node. Runs on the node's trio loop only."""

    def __init__(
        self,
        ctx: NodeContext,
        *,
        bid_window: float = BID_WINDOW_S,
        max_rounds: int = MAX_BID_ROUNDS,
    ) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self._ctx = ctx
        self._bid_window = bid_window
        self._max_rounds = max_rounds
        self._open: dict[str, _OpenJob] = {}
        self._bids_received = 0
        self._ended: Counter[JobState] = Counter()

    # -- what the node asks of this role --------------------------------------

    def owns(self, job_id: str) -> bool:
        return job_id in self._open

    def accepted(self, job_id: str) -> frozenset[str]:
        open_job = self._open.get(job_id)
        return frozenset(open_job.accepted) if open_job else frozenset()

    def statistics(self) -> RequesterStatistics:
        return RequesterStatistics(
            open_jobs=len(self._open),
            bids_received=self._bids_received,
            completed=self._ended[JobState.COMPLETED],
            failed=self._ended[JobState.ERROR],
        )

    async def resume(self) -> None:
        """End the jobs a previous run of this node left open.

        Their bid windows and deadlines died with that process, so each one ends
        ``error`` with a reason saying so; nothing in its history is lost.
        """
        for record in await self._ctx.db(self._ctx.store.open_jobs, "requester"):
            reason = f"the requester restarted while the job was {record.state.value}"
            event = self._ctx.event(record.job.id, "error", reason=reason)
            await self._ctx.db(self._ctx.store.record, event, state=JobState.ERROR, reason=reason)

    async def submit(self, spec: JobSpec) -> Job:
        """Accept a validated spec: store it, then drive it in the background."""
        ctx = self._ctx
        started = trio.current_time()
        job = Job(id=new_job_id(), requester=ctx.node_id, spec=spec, created_at=now())
        created = ctx.event(job.id, "created", concurrency=spec.deal.concurrency)
        await ctx.db(
            ctx.store.put_job, job, role="requester", state=JobState.BIDDING, event=created
        )
        self._open[job.id] = _OpenJob(job, started)
        ctx.spawn(self._drive, job.id)
        return job

    async def on_message(self, sender: str, message: Message) -> Ack:
        """Handle a direct message the node has already checked the sender of."""
        open_job = self._open.get(message.job_id)
        if open_job is None:
            return Ack(False, f"job {message.job_id} is not open on this requester")
        match message:
            case messages.Bid():
                self._on_bid(open_job, sender)
            case messages.ResultsProposed():
                if sender not in open_job.proposals:  # a retried send is one run
                    self._ctx.metrics.observe("run", message.run_seconds)
                open_job.proposals[sender] = message.result_id
                await self._record_execution(
                    open_job,
                    sender,
                    ExecutionState.PROPOSED,
                    "proposed",
                    result_id=message.result_id,
                    exit_code=message.exit_code,
                    stdout_preview=message.stdout_preview,
                    run_ms=round(message.run_seconds * 1000, 1),
                )
            case messages.ResultsPublished():
                open_job.published[sender] = message.location
                await self._record_execution(
                    open_job,
                    sender,
                    ExecutionState.PUBLISHED,
                    "published",
                    result_id=message.result_id,
                    result_url=message.location,
                )
            case messages.ComputeError():
                open_job.errors[sender] = message.message
                await self._record_execution(
                    open_job, sender, ExecutionState.ERROR, "compute_error", reason=message.message
                )
            case _:
                return Ack(False, f"a requester does not take {type(message).__name__}")
        open_job.changed.notify()
        return Ack(True)

    # -- bidding ---------------------------------------------------------------

    def _on_bid(self, open_job: _OpenJob, bidder: str) -> None:
        """Hold the bid until ``wanted`` bids came (``min_bids``), then accept in
        arrival order while fewer than ``concurrency`` are accepted, reject after."""
        if bidder in open_job.bidders:
            return  # a retried Bid: already answered
        self._bids_received += 1
        self._reach(open_job, "to_first_bid")
        open_job.bidders.add(bidder)
        open_job.held.append(bidder)
        if open_job.decided or len(open_job.held) + len(open_job.accepted) >= open_job.wanted:
            open_job.decided = True
            self._answer_held(open_job)

    def _answer_held(self, open_job: _OpenJob, reason: str | None = None) -> None:
        """Answer every held bid: accept while there is room and bidding is open."""
        held, open_job.held = open_job.held, []
        for bidder in held:
            room = len(open_job.accepted) < open_job.concurrency
            if reason is None and open_job.state is JobState.BIDDING and room:
                self._reach(open_job, "to_accepted")
                open_job.accepted.add(bidder)
                self._ctx.spawn(self._accept_bid, open_job, bidder)
            else:
                self._ctx.spawn(self._reject_bid, open_job, bidder, reason)

    async def _accept_bid(self, open_job: _OpenJob, bidder: str) -> None:
        await self._record_execution(open_job, bidder, ExecutionState.ACCEPTED, "bid_accepted")
        if not await self._ctx.send(bidder, messages.BidAccepted(job_id=open_job.job.id)):
            open_job.accepted.discard(bidder)
            await self._record_execution(
                open_job, bidder, ExecutionState.ERROR, "error", reason="could not reach the bidder"
            )
        open_job.changed.notify()

    async def _reject_bid(self, open_job: _OpenJob, bidder: str, reason: str | None) -> None:
        if reason is None:
            reason = "bidding closed" if open_job.state is not JobState.BIDDING else "enough bids"
        await self._record_execution(
            open_job, bidder, ExecutionState.REJECTED, "bid_rejected", reason=reason
        )
        await self._ctx.send(bidder, messages.BidRejected(job_id=open_job.job.id, reason=reason))

    # -- the job's course ------------------------------------------------------

    async def _drive(self, job_id: str) -> None:
        open_job = self._open[job_id]
        try:
            await self._run_course(open_job)
        except _JobFailed as failure:
            await self._fail(open_job, failure.reason)
        except Exception as exc:
            log.exception("job %s: unexpected failure", job_id)
            await self._fail(open_job, f"internal error in the requester: {exc!r}")
        finally:
            del self._open[job_id]
            self._ended[open_job.state] += 1
            self._reach(open_job, "total")

    async def _run_course(self, open_job: _OpenJob) -> None:
        ctx, job = self._ctx, open_job.job
        await self._collect_bids(open_job)
        await ctx.transport.publish(
            messages.JOBS_TOPIC, messages.BiddingClosed(job_id=job.id, requester=ctx.node_id)
        )
        await self._set_state(open_job, JobState.RUNNING, "bidding_closed")

        deadline = job.spec.timeout + RESULTS_GRACE_S
        with trio.move_on_after(deadline):
            await open_job.changed.wait_until(open_job.settled)
        if not open_job.settled():
            missing = sorted(open_job.accepted - open_job.proposals.keys() - open_job.errors.keys())
            raise _JobFailed(f"no results from {', '.join(missing)} within {deadline:.0f}s")

        await self._set_state(open_job, JobState.VERIFYING, "verifying")
        if not open_job.proposals:
            raise _JobFailed(self._all_failed_reason(open_job))
        await self._verify(open_job)

        with trio.move_on_after(PUBLISH_TIMEOUT_S):
            await open_job.changed.wait_until(
                lambda: open_job.results_accepted <= open_job.published.keys()
            )
        unpublished = open_job.results_accepted - open_job.published.keys()
        if unpublished:
            raise _JobFailed(f"{', '.join(sorted(unpublished))} did not publish accepted results")
        self._ctx.metrics.observe("publish", trio.current_time() - open_job.verdict_at)
        await self._set_state(open_job, JobState.COMPLETED, "completed")

    async def _collect_bids(self, open_job: _OpenJob) -> None:
        """Announce, then ``Rebid`` with a doubled window until ``c`` bids are accepted.

        Raises :class:`_JobFailed` with the reason once ``max_rounds`` windows passed.
        """
        ctx, job = self._ctx, open_job.job
        window = self._bid_window
        for round_ in range(self._max_rounds):
            announce = messages.JobAnnounced(
                job_id=job.id,
                job=job,
                requester_addrs=ctx.transport.direct_addrs,
                round=round_,
                window=window,
            )
            await ctx.transport.publish(messages.JOBS_TOPIC, announce)
            kind = "announced" if round_ == 0 else "rebid"
            await self._set_state(
                open_job,
                JobState.BIDDING,
                kind,
                window=window,
                round=round_,
                accepted=len(open_job.accepted),
            )
            with trio.move_on_after(window):
                await open_job.changed.wait_until(
                    lambda: len(open_job.accepted) >= open_job.concurrency
                )
            if len(open_job.accepted) >= open_job.concurrency:
                return
            open_job.waited += window
            window *= 2
        raise _JobFailed(self._too_few_bids_reason(open_job))

    async def _verify(self, open_job: _OpenJob) -> None:
        spec = open_job.job.spec
        proposals = [Proposal(node, rid) for node, rid in sorted(open_job.proposals.items())]
        started = trio.current_time()
        verdict = VERIFIERS[spec.verifier].verify(proposals, confidence=spec.deal.confidence)
        self._ctx.metrics.observe("verify", trio.current_time() - started)
        await self._gate(
            open_job,
            "verdict",
            proposals=dict(open_job.proposals),
            votes=dict(Counter(p.result_id for p in proposals)),
            accepted=sorted(verdict.accepted),
            rejected=verdict.rejected,
            failure=verdict.failure,
        )
        async with trio.open_nursery() as nursery:
            for node, reason in verdict.rejected.items():
                nursery.start_soon(self._tell_verdict, open_job, node, reason)
        if not verdict.accepted:
            reasons = verdict.failure or "; ".join(
                f"{n}: {r}" for n, r in sorted(verdict.rejected.items())
            )
            raise _JobFailed(f"verification accepted no result: {reasons}")
        open_job.results_accepted = set(verdict.accepted)
        # ResultsAccepted is the go-ahead to publish: in step mode it waits for the gate.
        await self._gate(
            open_job,
            "publish",
            results={node: open_job.proposals[node] for node in sorted(verdict.accepted)},
        )
        open_job.verdict_at = trio.current_time()
        # Before the go-ahead: the first ResultsPublished may come back at once.
        await self._set_state(open_job, JobState.PUBLISHING, "publishing")
        async with trio.open_nursery() as nursery:
            for node in verdict.accepted:
                nursery.start_soon(self._tell_verdict, open_job, node, None)

    async def _gate(self, open_job: _OpenJob, gate: str, **behind: object) -> None:
        """In step mode, record what is behind ``gate`` and wait until :meth:`step`."""
        if not open_job.job.spec.step:
            return
        open_job.gate, open_job.stepped = (gate, behind), trio.Event()
        await self._set_state(open_job, open_job.state, "gate", gate=gate, **behind)
        await open_job.stepped.wait()
        open_job.gate = None
        await self._set_state(open_job, open_job.state, "stepped", gate=gate)

    def gate_of(self, job_id: str) -> tuple[str, dict[str, object]] | None:
        """The gate ``job_id`` waits at and what is behind it; None if it waits at none."""
        open_job = self._open.get(job_id)
        return open_job.gate if open_job is not None else None

    def step(self, job_id: str) -> str:
        """Open the gate ``job_id`` waits at; its name. Raises :class:`NotAtGate` if the
        job is not one of this node's open jobs or waits at no gate."""
        open_job = self._open.get(job_id)
        if open_job is None or open_job.gate is None:
            state = open_job.state.value if open_job is not None else "not open here"
            raise NotAtGate(f"job {job_id} is not waiting at a gate (state: {state})")
        open_job.stepped.set()
        return open_job.gate[0]

    async def _tell_verdict(self, open_job: _OpenJob, node: str, rejected: str | None) -> None:
        job_id = open_job.job.id
        if rejected is None:
            await self._record_execution(
                open_job, node, ExecutionState.RESULTS_ACCEPTED, "results_accepted"
            )
            await self._ctx.send(node, messages.ResultsAccepted(job_id=job_id))
        else:
            await self._record_execution(
                open_job, node, ExecutionState.RESULTS_REJECTED, "results_rejected", reason=rejected
            )
            await self._ctx.send(node, messages.ResultsRejected(job_id=job_id, reason=rejected))

    async def _fail(self, open_job: _OpenJob, reason: str) -> None:
        log.info("job %s failed: %s", open_job.job.id, reason)
        with trio.CancelScope(shield=True):
            await self._set_state(open_job, JobState.ERROR, "error", reason=reason)
            self._answer_held(open_job, reason)
            cancel = messages.Cancelled(job_id=open_job.job.id, reason=reason)
            for node in open_job.accepted - open_job.published.keys():
                self._ctx.spawn(self._ctx.send, node, cancel)

    def _too_few_bids_reason(self, open_job: _OpenJob) -> str:
        spec, got = open_job.job.spec, len(open_job.bidders)
        rounds = f"{self._max_rounds} round(s) of bidding ({open_job.waited:g}s)"
        if got == 0:
            what = f"image {spec.image!r}" if spec.engine == "docker" else f"engine {spec.engine!r}"
            return (
                f"no node bid in {rounds}: no node has {what} available locally,"
                " or every node is busy"
            )
        size = self._ctx.membership.size
        deal = spec.deal
        needs = (
            f"min_bids {deal.min_bids}"
            if deal.min_bids > deal.concurrency
            else f"concurrency {deal.concurrency}"
        )
        return f"{needs} but only {got} node(s) bid in {rounds} ({size} nodes in the network)"

    @staticmethod
    def _all_failed_reason(open_job: _OpenJob) -> str:
        errors = sorted(set(open_job.errors.values()))
        count = len(open_job.errors)
        return f"all {count} node(s) failed: " + "; ".join(errors)

    # -- recording -------------------------------------------------------------

    def _reach(self, open_job: _OpenJob, phase: Phase) -> None:
        """The job reached the end of ``phase`` (timed from its submission): observed
        the first time only."""
        if phase not in open_job.reached:
            open_job.reached.add(phase)
            self._ctx.metrics.observe(phase, trio.current_time() - open_job.started)

    async def _set_state(
        self, open_job: _OpenJob, state: JobState, kind: str, reason: str | None = None, **detail
    ) -> None:
        open_job.state = state
        if reason is not None:
            detail["reason"] = reason
        event = self._ctx.event(open_job.job.id, kind, state=state.value, **detail)
        await self._ctx.db(self._ctx.store.record, event, state=state, reason=reason)
        open_job.changed.notify()

    async def _record_execution(
        self,
        open_job: _OpenJob,
        node: str,
        state: ExecutionState,
        kind: str,
        **fields: object,
    ) -> None:
        detail = {k: v for k, v in fields.items() if k != "stdout_preview"}
        event = self._ctx.event(open_job.job.id, kind, shard=0, peer=node, **detail)
        fields.pop("run_ms", None)
        execution = Execution(
            job_id=open_job.job.id, shard=0, node=node, state=state, updated_at=event.at, **fields
        )
        await self._ctx.db(self._ctx.store.record, event, execution=execution)


class NotAtGate(Exception):
    """A step was asked of a job that is not waiting at a gate."""


class _JobFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
