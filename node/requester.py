"""The requester role: owns the jobs submitted to this node, from dispatch to verdict.

Each shard of a job runs its own course at the same time as the others. Its bids
come first (README, dispatch): with ``offer`` dispatch (the default) the requester offers
the shard straight to the ``c = max(concurrency, min_bids)`` best-ranked live
nodes it believes have room (:mod:`node.offers`); each answers at once, with a
bid or a reason to decline, and a decline, a failure to deliver or a slow answer
makes it offer the next node. Only when offers run out does it gossip the shard
(``JobAnnounced``, then ``Rebid`` rounds), and ``gossip`` dispatch does that from
the start. It holds the bids until ``c`` have come, accepts the first
``concurrency`` and rejects the rest, waits for their proposals (sealed to this
node's key) or errors, asks the job's verifier, tells each compute node the
verdict, and waits for the accepted results to be published. When the verdict
asks for more runs (README, verification: a disagreement short of the deal's
margin, or a spot check), the shard keeps its proposals and runs on that many
fresh nodes (:meth:`Requester._escalate`); each verdict counts in the nodes'
credibility (:mod:`node.credibility`). With a plain majority (margin 1), a shard
whose verification finds no winner runs again on nodes that have not run it, up to
:data:`MAX_RERUNS` times. The job completes when every shard has; the first
shard that fails ends the job ``error`` with a reason a user can read. Every step
is an event in the store, and the job's last event counts the messages it cost,
by kind (every direct message of a job has its requester at one end).

Failures (README, failures): offers declined ``full`` queue the shard until a node
says a slot came free (``SlotFreed``) or the spec's ``queue_timeout``; an accepted
node that goes silent (no ``ExecutionHeartbeat``) or says it lost its run is
replaced by the next one, up to ``max_retries``; :meth:`Requester.cancel` stops a
job wherever it is; and a restarted requester takes its open jobs back from its
records (:meth:`Requester.resume`).
"""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

import trio

from node import messages
from node.context import NodeContext
from node.credibility import Credibility, CredibilityStatistics
from node.messages import Ack, Message
from node.metrics import Phase
from node.models import (
    RESULTS_GRACE_S,
    Execution,
    ExecutionState,
    Job,
    JobSpec,
    JobState,
    new_job_id,
    now,
)
from node.offers import OfferHints, OfferHintStatistics, spread_hosts
from node.output import OutputStore
from node.p2p.transport import TransportError
from node.resume import ShardProgress, Stage, shard_progress
from node.sealing import SealError, Unsealer
from node.verifiers import VERIFIERS, Policy, Proposal, Verdict
from node.waiting import ANSWERS, ShardWait

log = logging.getLogger(__name__)

BID_WINDOW_S = 5.0
# Rounds of bidding before a shard fails for want of bids; each window doubles, so
# the default waits 5 + 10 + 20 s for a busy cluster to free a slot.
MAX_BID_ROUNDS = 3
PUBLISH_TIMEOUT_S = 60.0
# An accepted node that has not published yet is told again this often.
PUBLISH_RETELL_S = 5.0
# Fresh runs of a shard after its verification found no winner.
MAX_RERUNS = 1
# An offer unanswered this long: offer the next node as well (the first may still bid).
OFFER_PATIENCE_S = 1.0
# Offers of a shard beyond c, per attempt, before it falls back to gossip.
EXTRA_OFFERS = 8
# A queued shard re-offers this often even if no node said a slot came free.
QUEUE_RETRY_S = 10.0

Dispatch = Literal["offer", "gossip"]
DISPATCHES: tuple[Dispatch, ...] = ("offer", "gossip")
DEFAULT_DISPATCH: Dispatch = "offer"

# The state of a shard resumed at each stage.
_STAGE_STATE: dict[Stage, JobState] = {
    "bids": JobState.BIDDING,
    "results": JobState.RUNNING,
    "publish": JobState.PUBLISHING,
    "done": JobState.COMPLETED,
}

# A job is as far along as its least advanced shard.
_PROGRESS = (
    JobState.BIDDING,
    JobState.RUNNING,
    JobState.VERIFYING,
    JobState.PUBLISHING,
    JobState.COMPLETED,
)


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
    retries of a bid counted once; ``reruns``: shards run again for want of a winner;
    ``unsealable``: proposals this node could not open (not sealed to its key);
    ``offers`` sent, ``offers_declined``, ``offers_undelivered`` (no answer came),
    ``gossip_fallbacks``: shards gossiped after their offers ran out; ``retries``:
    shards started again elsewhere after their node was lost; ``queued``: shards
    waiting for a free slot now; ``cancelled``: jobs cancelled since the start;
    ``escalations``: disagreements sent to fresh nodes, ``spot_checks``: unanimous
    results checked by one more, ``extra_runs``: the runs both added;
    ``credibility``: the record of the nodes (:mod:`node.credibility`)."""

    open_jobs: int
    bids_received: int
    completed: int
    failed: int
    reruns: int
    unsealable: int
    dispatch: str = DEFAULT_DISPATCH
    offers: int = 0
    offers_declined: int = 0
    offers_undelivered: int = 0
    gossip_fallbacks: int = 0
    hints: OfferHintStatistics | None = None
    retries: int = 0
    queued: int = 0
    cancelled: int = 0
    escalations: int = 0
    spot_checks: int = 0
    extra_runs: int = 0
    credibility: CredibilityStatistics | None = None


@dataclass
class _Shard:
    """One shard's course. The sets from ``bidders`` on hold the current attempt."""

    index: int
    state: JobState = JobState.BIDDING
    round: int = 0  # bidding rounds announced, over every attempt (the job's announce is 0)
    attempt: int = 0
    tried: set[str] = field(default_factory=set)  # ran an earlier attempt: not fresh
    bidders: set[str] = field(default_factory=set)
    held: list[str] = field(default_factory=list)  # bids waiting for min_bids, in order
    decided: bool = False  # enough bids came: later ones are answered at once
    accepted: set[str] = field(default_factory=set)
    offered: set[str] = field(default_factory=set)  # offered in this attempt
    announced: bool = False  # gossiped: any node may bid
    proposals: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    results_accepted: set[str] = field(default_factory=set)
    published: dict[str, str] = field(default_factory=dict)
    waited: float = 0.0  # seconds of bid windows that passed without enough bids
    last_answer_at: float = 0.0  # trio clock of the last proposal or error
    verdict_at: float = 0.0  # trio clock when the accepted results were told to publish
    gate: tuple[str, dict[str, object]] | None = None  # step mode: where it waits, what for
    stepped: trio.Event = field(default_factory=trio.Event)
    heard: dict[str, float] = field(default_factory=dict)  # trio clock: accepted node's last word
    lost: dict[str, str] = field(default_factory=dict)  # accepted nodes that said they lost it
    retries: int = 0  # runs started again elsewhere after their node was lost
    declined_full: bool = False  # an offer of the last round was declined for want of a slot
    queued: bool = False  # an event said it waits for a slot
    answers: dict[str, str] = field(default_factory=dict)  # this attempt's offers: node -> answer
    round_bids: list[int] = field(default_factory=list)  # bids per round announced, this attempt
    resume_at: Stage = "bids"  # where a resumed course goes on
    extra: int = 0  # runs added on fresh nodes by escalations and spot checks, this attempt
    first_runs: frozenset[str] | None = None  # the proposers before the first escalation

    def settled(self) -> bool:
        return all(n in self.proposals or n in self.errors for n in self.accepted)

    def rerun(self) -> None:
        """Start a fresh attempt: the nodes that ran this one may not bid again."""
        self.tried |= self.accepted
        self.attempt += 1
        self.bidders, self.held, self.decided = set(), [], False
        self.accepted, self.proposals, self.errors = set(), {}, {}
        self.offered, self.announced = set(), False
        self.answers, self.round_bids = {}, []
        self.waited = 0.0
        self.heard, self.lost = {}, {}
        self.extra, self.first_runs = 0, None

    @classmethod
    def resumed(cls, progress: ShardProgress, clock: float) -> _Shard:
        """The shard as an earlier life of the requester left it (trio ``clock`` now:
        its accepted nodes' silence counts from here)."""
        return cls(
            index=progress.index,
            state=_STAGE_STATE[progress.stage],
            attempt=progress.attempt,
            tried=set(progress.tried),
            bidders=set(progress.accepted),
            decided=bool(progress.accepted),
            accepted=set(progress.accepted),
            proposals=dict(progress.proposals),
            errors=dict(progress.errors),
            results_accepted=set(progress.results_accepted),
            published=dict(progress.published),
            heard=dict.fromkeys(progress.accepted, clock),
            retries=progress.retries,
            resume_at=progress.stage,
            extra=progress.extra,
            first_runs=progress.first_runs,
        )

    def running(self) -> set[str]:
        """The accepted nodes that have neither proposed nor failed yet."""
        return self.accepted - self.proposals.keys() - self.errors.keys()

    def next_silence(self) -> float:
        """The trio clock at which the first running node not heard from since would
        count as silent (infinity when none runs)."""
        heard = [self.heard[n] for n in self.running() if n in self.heard]
        return min(heard, default=math.inf) + messages.HEARTBEAT_TIMEOUT_S

    def silent(self, now: float) -> dict[str, float]:
        """The accepted nodes still running that have not been heard from for
        :data:`~node.messages.HEARTBEAT_TIMEOUT_S`, with the seconds since."""
        return {
            n: now - self.heard[n]
            for n in self.running()
            if n in self.heard and now - self.heard[n] >= messages.HEARTBEAT_TIMEOUT_S
        }


@dataclass
class _OpenJob:
    job: Job
    started: float  # trio clock at submission: what the phase latencies count from
    shards: list[_Shard]
    state: JobState = JobState.BIDDING
    changed: _Signal = field(default_factory=_Signal)
    reached: set[Phase] = field(default_factory=set)  # phases observed, once each
    # Messages of this job through this node: "out.Kind", "in.Kind", "gossip.Kind".
    messages: Counter[str] = field(default_factory=Counter)
    ended: trio.Event = field(default_factory=trio.Event)  # its last event is stored
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # cancels its course
    cancelled: str | None = None  # why it was cancelled, once it was
    resumed: bool = False  # taken back by a restarted requester

    @property
    def concurrency(self) -> int:
        return self.job.spec.deal.concurrency

    @property
    def wanted(self) -> int:
        return self.job.spec.deal.wanted_bids

    def runs(self, shard: _Shard) -> int:
        """The runs ``shard`` needs accepted: ``concurrency`` and the extra ones."""
        return self.concurrency + shard.extra

    def bids_wanted(self, shard: _Shard) -> int:
        """The bids ``shard`` holds out for before accepting (``min_bids`` too)."""
        return self.wanted + shard.extra

    def shard(self, index: int) -> _Shard | None:
        return self.shards[index] if 0 <= index < len(self.shards) else None

    def label(self, shard: _Shard) -> str:
        """How a reason names the shard: nothing when the job has only one."""
        return f"shard {shard.index}: " if len(self.shards) > 1 else ""


class Requester:
    """Drives the jobs submitted to this node. Runs on the node's trio loop only."""

    def __init__(
        self,
        ctx: NodeContext,
        unsealer: Unsealer,
        *,
        bid_window: float = BID_WINDOW_S,
        max_rounds: int = MAX_BID_ROUNDS,
        max_reruns: int = MAX_RERUNS,
        dispatch: Dispatch = DEFAULT_DISPATCH,
        hints: OfferHints | None = None,
        credibility: Credibility | None = None,
        offer_first: tuple[str, ...] = (),
    ) -> None:
        if dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {', '.join(DISPATCHES)}, got {dispatch!r}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        if max_reruns < 0:
            raise ValueError(f"max_reruns must not be negative, got {max_reruns}")
        self._ctx = ctx
        self._unsealer = unsealer
        self._bid_window = bid_window
        self._max_rounds = max_rounds
        self._max_reruns = max_reruns
        self.dispatch: Dispatch = dispatch
        self._hints = hints or OfferHints()
        self.credibility = credibility or Credibility()
        # A test hook: these nodes are offered a shard's first runs before any other.
        self._offer_first = offer_first
        self._checks: Counter[str] = Counter()  # escalations, spot checks, extra runs
        self._open: dict[str, _OpenJob] = {}
        self._offers: Counter[str] = Counter()
        self._bids_received = 0
        self._reruns = 0
        self._unsealable = 0
        self._ended: Counter[JobState] = Counter()
        self._retries = 0
        # Shards waiting for a free slot, oldest first: a freed slot wakes the oldest.
        # Each waiter's place: (its job's submission, trio clock; the shard's index).
        self._queue: list[tuple[tuple[float, int], trio.Event]] = []
        # Nodes that declined an offer as full: each says when a slot comes free.
        self._full: set[str] = set()
        # What the jobs' runs print, as they print it (README, live output).
        self.outputs = OutputStore()

    # -- what the node asks of this role --------------------------------------

    def owns(self, job_id: str) -> bool:
        return job_id in self._open

    def accepted(self, job_id: str, shard: int) -> frozenset[str]:
        """The nodes whose bid on ``shard`` of ``job_id`` is accepted in its current attempt."""
        open_job = self._open.get(job_id)
        found = open_job.shard(shard) if open_job else None
        return frozenset(found.accepted) if found else frozenset()

    def bidders(self, job_id: str, shard: int) -> frozenset[str] | None:
        """Who may bid on ``shard`` of ``job_id`` (or decline it): the nodes it was
        offered to, or None (anyone) once it was gossiped or if it is not open here."""
        open_job = self._open.get(job_id)
        found = open_job.shard(shard) if open_job else None
        if found is None or found.announced:
            return None
        return frozenset(found.offered)

    def statistics(self) -> RequesterStatistics:
        return RequesterStatistics(
            open_jobs=len(self._open),
            bids_received=self._bids_received,
            completed=self._ended[JobState.COMPLETED],
            failed=self._ended[JobState.ERROR],
            reruns=self._reruns,
            unsealable=self._unsealable,
            dispatch=self.dispatch,
            offers=self._offers["sent"],
            offers_declined=self._offers["declined"],
            offers_undelivered=self._offers["undelivered"],
            gossip_fallbacks=self._offers["fallbacks"],
            hints=self._hints.statistics(),
            retries=self._retries,
            queued=len(self._queue),
            cancelled=self._ended[JobState.CANCELLED],
            escalations=self._checks["escalated"],
            spot_checks=self._checks["spot_check"],
            extra_runs=self._checks["extra_runs"],
            credibility=self.credibility.statistics(now()),
        )

    def full_nodes(self) -> AbstractSet[str]:
        """The nodes that declined an offer of this node's as full and have not said
        since that a slot came free: who may send a :class:`~node.messages.SlotFreed`.
        A live view, not a copy: the node asks on every direct message."""
        return self._full

    async def resume(self) -> list[str]:
        """Take back the jobs an earlier life of this node left open, each shard where
        its records say it stood (:func:`node.resume.shard_progress`), with the
        deadlines its submission set; the ids, for :meth:`drive_resumed` to drive
        once the transport runs. Until then messages about them are already taken.
        """
        ctx, resumed = self._ctx, []
        for record in await ctx.db(ctx.store.open_jobs, "requester"):
            job = record.job
            events = await ctx.db(ctx.store.events, job.id)
            # The trio clock at submission, as if this process had seen it.
            started = trio.current_time() - max(0.0, now() - job.created_at)
            shards = []
            for index in range(job.shards):
                progress = shard_progress(index, ctx.node_id, record.executions, events)
                shards.append(_Shard.resumed(progress, trio.current_time()))
            open_job = _OpenJob(job, started, shards, state=record.state, resumed=True)
            self._open[job.id] = open_job
            stages = {str(s.index): s.resume_at for s in shards}
            await self._set_state(open_job, None, record.state, "resumed", stages=stages)
            resumed.append(job.id)
        return resumed

    def drive_resumed(self, job_ids: list[str]) -> None:
        """Drive the jobs :meth:`resume` took back (the transport runs now)."""
        for job_id in job_ids:
            self._ctx.spawn(self._drive, job_id)

    async def submit(self, spec: JobSpec, shards: int = 1) -> Job:
        """Accept a validated spec of ``shards`` shards: store it, then drive it in the
        background."""
        if shards < 1:
            raise ValueError(f"a job has at least one shard, got {shards}")
        ctx = self._ctx
        started = trio.current_time()
        job = Job(
            id=new_job_id(), requester=ctx.node_id, spec=spec, created_at=now(), shards=shards
        )
        created = ctx.event(job.id, "created", concurrency=spec.deal.concurrency, shards=shards)
        await ctx.db(
            ctx.store.put_job, job, role="requester", state=JobState.BIDDING, event=created
        )
        self._open[job.id] = _OpenJob(job, started, [_Shard(i) for i in range(shards)])
        ctx.spawn(self._drive, job.id)
        return job

    async def on_message(self, sender: str, message: Message) -> Ack:
        """Handle a direct message the node has already checked the sender of."""
        if isinstance(message, messages.SlotFreed):
            if self._slot_freed(sender, message.slots):
                return Ack(True)
            return Ack(False, "no shard waits for a slot here")
        open_job = self._open.get(message.job_id)
        if open_job is None:
            return Ack(False, f"job {message.job_id} is not open on this requester")
        shard = open_job.shard(getattr(message, "shard", 0))
        if shard is None:
            return Ack(False, f"job {message.job_id} has no shard {message.shard}")
        open_job.messages[f"in.{type(message).__name__}"] += 1
        match message:
            case messages.Bid():
                self._on_bid(open_job, shard, sender)
            case messages.OfferDeclined():
                pass  # an answer counts only in its offer's ack: nothing to do
            case messages.ResultsProposed():
                await self._on_proposed(open_job, shard, sender, message)
            case messages.ResultsPublished():
                shard.published[sender] = message.location
                await self._record_execution(
                    open_job,
                    shard,
                    sender,
                    ExecutionState.PUBLISHED,
                    "published",
                    result_id=message.result_id,
                    result_url=message.location,
                    publish_ms=message.publish_ms,
                )
            case messages.ComputeError():
                await self._on_error(open_job, shard, sender, message.message)
            case messages.ExecutionHeartbeat():
                shard.heard[sender] = trio.current_time()
                return Ack(True)  # nothing changed: no waiter needs waking
            case messages.JobOutput():
                shard.heard[sender] = trio.current_time()  # as good as a heartbeat
                self.outputs.open(message.job_id).add(
                    shard.index, sender, message.lines, message.dropped
                )
                return Ack(True)
            case messages.ExecutionLost():
                if sender not in shard.proposals and sender not in shard.errors:
                    shard.lost[sender] = f"the node lost its run: {message.reason}"
            case _:
                return Ack(False, f"a requester does not take {type(message).__name__}")
        open_job.changed.notify()
        return Ack(True)

    async def _on_proposed(
        self, open_job: _OpenJob, shard: _Shard, sender: str, message: messages.ResultsProposed
    ) -> None:
        if sender in shard.errors:
            return  # it failed, or answered after the deadline: its run no longer counts
        try:
            result_id = self._unsealer.open(message.sealed_result).decode()
        except (SealError, UnicodeDecodeError) as exc:
            self._unsealable += 1
            await self._on_error(
                open_job, shard, sender, f"its proposal could not be opened: {exc}"
            )
            return
        shard.heard[sender] = trio.current_time()
        if shard.proposals.get(sender) == result_id:
            return  # delivered again (a requester restart asked for it): recorded once
        if sender not in shard.proposals:  # a retried send is one run
            self._ctx.metrics.observe("run", message.run_seconds)
            shard.last_answer_at = trio.current_time()
        shard.proposals[sender] = result_id
        await self._record_execution(
            open_job,
            shard,
            sender,
            ExecutionState.PROPOSED,
            "proposed",
            result_id=result_id,
            exit_code=message.exit_code,
            stdout_preview=message.stdout_preview,
            run_ms=round(message.run_seconds * 1000, 1),
            phases_ms=message.phases_ms,
        )

    async def _on_error(self, open_job: _OpenJob, shard: _Shard, node: str, reason: str) -> None:
        if node not in shard.errors:
            shard.last_answer_at = trio.current_time()
        shard.errors[node] = reason
        await self._record_execution(
            open_job, shard, node, ExecutionState.ERROR, "compute_error", reason=reason
        )

    # -- bidding ---------------------------------------------------------------

    def _on_bid(self, open_job: _OpenJob, shard: _Shard, bidder: str) -> None:
        """Hold the bid until ``wanted`` bids came (``min_bids``), then accept in
        arrival order while fewer than ``concurrency`` are accepted, reject after.
        A node that ran an earlier attempt of the shard is rejected at once."""
        if bidder in shard.bidders:
            return  # a retried Bid: already answered
        if open_job.state.terminal or open_job.cancelled is not None:
            self._ctx.spawn(self._reject_bid, open_job, shard, bidder, "the job has ended")
            return
        self._bids_received += 1
        self._reach(open_job, "to_first_bid")
        shard.bidders.add(bidder)
        if shard.round_bids and shard.answers.get(bidder) != "bid":
            shard.round_bids[-1] += 1  # a bid on a gossiped round, not an offer
        if bidder in shard.tried:
            reason = "ran an earlier attempt of this shard: a re-run needs fresh nodes"
            self._ctx.spawn(self._reject_bid, open_job, shard, bidder, reason)
            return
        if self._shunned(open_job, bidder):
            reason = "caught forging by this requester lately: it is offered no work for now"
            self._ctx.spawn(self._reject_bid, open_job, shard, bidder, reason)
            return
        shard.held.append(bidder)
        if shard.decided or len(shard.held) + len(shard.accepted) >= open_job.bids_wanted(shard):
            shard.decided = True
            self._answer_held(open_job, shard)

    def _answer_held(self, open_job: _OpenJob, shard: _Shard, reason: str | None = None) -> None:
        """Answer every held bid: accept while there is room and bidding is open."""
        held, shard.held = shard.held, []
        for bidder in held:
            room = len(shard.accepted) < open_job.runs(shard)
            if reason is None and shard.state is JobState.BIDDING and room:
                self._reach(open_job, "to_accepted")
                shard.accepted.add(bidder)
                # Heartbeats are due from the acceptance on: silence counts from here.
                shard.heard[bidder] = trio.current_time()
                self._ctx.spawn(self._accept_bid, open_job, shard, bidder)
            else:
                self._ctx.spawn(self._reject_bid, open_job, shard, bidder, reason)

    async def _accept_bid(self, open_job: _OpenJob, shard: _Shard, bidder: str) -> None:
        await self._record_execution(
            open_job, shard, bidder, ExecutionState.ACCEPTED, "bid_accepted"
        )
        accept = messages.BidAccepted(job_id=open_job.job.id, shard=shard.index)
        if not await self._send(open_job, bidder, accept):
            shard.accepted.discard(bidder)
            await self._record_execution(
                open_job,
                shard,
                bidder,
                ExecutionState.ERROR,
                "error",
                reason="could not reach the bidder",
            )
        open_job.changed.notify()

    async def _reject_bid(
        self, open_job: _OpenJob, shard: _Shard, bidder: str, reason: str | None
    ) -> None:
        if reason is None:
            reason = "bidding closed" if shard.state is not JobState.BIDDING else "enough bids"
        await self._record_execution(
            open_job, shard, bidder, ExecutionState.REJECTED, "bid_rejected", reason=reason
        )
        reject = messages.BidRejected(job_id=open_job.job.id, shard=shard.index, reason=reason)
        await self._send(open_job, bidder, reject)

    # -- the job's course ------------------------------------------------------

    async def _drive(self, job_id: str) -> None:
        open_job = self._open[job_id]
        try:
            with open_job.scope:
                try:
                    await self._run_course(open_job)
                except _JobFailed as failure:
                    await self._fail(open_job, failure.reason)
                except Exception as exc:
                    log.exception("job %s: unexpected failure", job_id)
                    await self._fail(open_job, f"internal error in the requester: {exc!r}")
            if open_job.cancelled is not None and not open_job.state.terminal:
                await self._end(open_job, JobState.CANCELLED, "cancelled", open_job.cancelled)
        finally:
            del self._open[job_id]
            self._ended[open_job.state] += 1
            self._reach(open_job, "total")
            open_job.ended.set()
            self.outputs.end(job_id)

    async def cancel(self, job_id: str, reason: str = "cancelled by the user") -> None:
        """Cancel ``job_id``: its course stops wherever it is (a step-mode gate too),
        every node holding a bid or a run of it is told to stop, and the job ends
        ``cancelled`` with ``reason``. Returns once that event is stored.

        Raises :class:`JobNotOpen` if the job is not open on this requester.
        """
        open_job = self._open.get(job_id)
        if open_job is None:
            raise JobNotOpen(job_id)
        if open_job.cancelled is None:
            open_job.cancelled = reason
            open_job.scope.cancel()
        await open_job.ended.wait()

    async def wait_ended(self, job_id: str, timeout: float) -> None:
        """Return once ``job_id`` has ended (its last event stored), or after ``timeout``
        seconds; at once if it is not open here."""
        open_job = self._open.get(job_id)
        if open_job is not None:
            with trio.move_on_after(timeout):
                await open_job.ended.wait()

    async def _run_course(self, open_job: _OpenJob) -> None:
        """Dispatch the job, run every shard's course at once, complete when all have.
        Raises :class:`_JobFailed` with the first shard's failure (the others stop)."""
        job = open_job.job
        if not open_job.resumed:  # else dispatched by an earlier life of this node
            if self.dispatch == "gossip":
                await self._announce(open_job, None, window=self._bid_window)
                for shard in open_job.shards:
                    shard.announced = True
            await self._set_state(
                open_job,
                None,
                JobState.BIDDING,
                "announced" if self.dispatch == "gossip" else "offered",
                window=self._bid_window,
                round=0,
                shards=job.shards,
            )
        failure: _JobFailed | None = None
        async with trio.open_nursery() as nursery:

            async def course(shard: _Shard) -> None:
                nonlocal failure
                try:
                    await self._run_shard(open_job, shard)
                except _JobFailed as exc:
                    if failure is None:
                        failure = _JobFailed(open_job.label(shard) + exc.reason)
                    nursery.cancel_scope.cancel()

            for shard in open_job.shards:
                nursery.start_soon(course, shard)
        if failure is not None:
            raise failure
        await self._set_state(
            open_job, None, JobState.COMPLETED, "completed", messages=dict(open_job.messages)
        )

    async def _run_shard(self, open_job: _OpenJob, shard: _Shard) -> None:
        """Bid, run, verify and publish one shard; again on fresh nodes while its
        verification finds no winner and re-runs are left. A resumed shard goes on
        from the stage its records left it at."""
        ctx, job = self._ctx, open_job.job
        stage, shard.resume_at = shard.resume_at, "bids"
        if stage == "done":
            return
        if stage == "publish":
            verdict = Verdict(frozenset(shard.results_accepted))
            await self._publish(open_job, shard, verdict, told_before=True)
            return
        escalated = False  # its extra runs are accepted: no bidding before the results
        while True:
            deadline = job.spec.timeout + RESULTS_GRACE_S
            if stage == "results" and len(shard.accepted) >= open_job.runs(shard):
                # Its nodes ran on while this requester was down: ask where they stand.
                await self._ask_status(open_job, shard)
            elif not escalated:
                await self._gather_bids(open_job, shard, retry=stage != "bids")
                if shard.announced:  # else no node but the offered ones heard of it
                    closed = messages.BiddingClosed(
                        job_id=job.id, requester=ctx.node_id, shard=shard.index
                    )
                    await self._gossip(open_job, closed)
                await self._set_state(open_job, shard, JobState.RUNNING, "bidding_closed")
            stage = "bids"
            await self._await_results(open_job, shard, deadline)
            if not shard.settled():
                # Verify what came in time; the silent nodes count as failed runs.
                missing = sorted(shard.running())
                late = f"no results within {deadline:.0f}s"
                for node in missing:
                    await self._on_error(open_job, shard, node, late)
                if not shard.proposals:
                    raise _JobFailed(f"no results from {', '.join(missing)} within {deadline:.0f}s")

            await self._set_state(open_job, shard, JobState.VERIFYING, "verifying")
            if not shard.proposals:
                raise _JobFailed(self._all_failed_reason(shard))
            verdict = await self._verify(open_job, shard)
            if verdict.more:
                await self._escalate(open_job, shard, verdict)
                escalated = True
                continue
            escalated = False
            if verdict.accepted:
                break
            reason = verdict.failure or "; ".join(
                f"{n}: {r}" for n, r in sorted(verdict.rejected.items())
            )
            failed = f"verification accepted no result: {reason}"
            if shard.attempt:
                failed += f" (after {shard.attempt} re-run(s) on fresh nodes)"
            # With a margin the escalation was the second chance: its end is final.
            if shard.attempt >= self._max_reruns or job.spec.deal.margin > 1:
                raise _JobFailed(failed)
            fresh = self._fresh(shard)
            if fresh < open_job.concurrency:
                raise _JobFailed(
                    f"{failed}; a re-run needs {open_job.concurrency} nodes that have not run"
                    f" this shard, and only {fresh} of the {self._ctx.membership.size} have not"
                )
            self._reruns += 1
            shard.rerun()
            await self._set_state(
                open_job, shard, JobState.BIDDING, "rerun", attempt=shard.attempt, reason=reason
            )
        await self._publish(open_job, shard, verdict)

    async def _ask_status(self, open_job: _OpenJob, shard: _Shard) -> None:
        """Ask each accepted node that has not answered yet where its run stands; one
        that holds none (or cannot be reached: its heartbeats will not come either)
        is lost. Proposals made meanwhile come as their nodes deliver them again."""

        async def ask(node: str) -> None:
            status = messages.Status(job_id=open_job.job.id, shard=shard.index)
            open_job.messages["out.Status"] += 1
            try:
                ack = await self._ctx.transport.send(node, status)
            except TransportError as exc:
                shard.lost[node] = f"not reachable after the requester restarted: {exc}"
                return
            report = ack.answer
            if not isinstance(report, messages.StatusReport) or report.state == "unknown":
                why = ack.error or "the node holds no run of it"
                shard.lost[node] = f"lost while the requester restarted: {why}"
            else:
                shard.heard[node] = trio.current_time()
            open_job.changed.notify()

        async with trio.open_nursery() as nursery:
            for node in sorted(shard.running()):
                nursery.start_soon(ask, node)

    async def _await_results(self, open_job: _OpenJob, shard: _Shard, deadline: float) -> None:
        """Wait until every accepted node proposed or failed, or ``deadline`` seconds
        passed since the last of them was accepted. A node that went silent or said
        it lost its run is replaced by the next one (:meth:`_retry`) while the spec's
        ``max_retries`` last; after that it counts as a failed run."""
        end = trio.current_time() + deadline

        def woken() -> bool:
            return shard.settled() or bool(shard.lost)

        while not shard.settled() and trio.current_time() < end:
            # Until the first moment a running node could have gone silent (a heartbeat
            # pushes it back), or something changes.
            with trio.move_on_at(min(shard.next_silence(), end)):
                await open_job.changed.wait_until(woken)
            causes = dict(shard.lost)
            shard.lost.clear()
            for node, silent in shard.silent(trio.current_time()).items():
                causes.setdefault(node, f"no heartbeat for {silent:.1f}s")
            for node, cause in sorted(causes.items()):
                if node not in shard.accepted or node in shard.proposals or node in shard.errors:
                    continue
                if shard.retries >= open_job.job.spec.max_retries:
                    await self._on_error(open_job, shard, node, f"lost: {cause}")
                    continue
                await self._retry(open_job, shard, node, cause)
                end = max(end, trio.current_time() + deadline)

    async def _retry(self, open_job: _OpenJob, shard: _Shard, node: str, cause: str) -> None:
        """Give up on ``node``'s run of ``shard`` and get a bid from another node."""
        shard.retries += 1
        self._retries += 1
        detected = trio.current_time() - shard.heard.get(node, trio.current_time())
        shard.accepted.discard(node)
        shard.heard.pop(node, None)
        shard.tried.add(node)  # it may come back, but this shard runs elsewhere now
        await self._record_execution(
            open_job, shard, node, ExecutionState.ERROR, "lost", reason=cause
        )
        await self._set_state(
            open_job,
            shard,
            JobState.BIDDING,
            "retry",
            peer=node,
            cause=cause,
            retry=shard.retries,
            max_retries=open_job.job.spec.max_retries,
            detected_after_s=round(detected, 3),
        )
        stop = messages.Cancelled(
            job_id=open_job.job.id, reason=f"re-run elsewhere: {cause}", shards=[shard.index]
        )
        self._ctx.spawn(self._send, open_job, node, stop)
        await self._gather_bids(open_job, shard, retry=True)
        await self._set_state(open_job, shard, JobState.RUNNING, "retry_accepted")

    async def _gossip(self, open_job: _OpenJob, message: Message) -> None:
        open_job.messages[f"gossip.{type(message).__name__}"] += 1
        await self._ctx.transport.publish(message)

    async def _send(self, open_job: _OpenJob, peer: str, message: Message) -> bool:
        """A direct message of ``open_job`` to ``peer``, counted; whether it was acked."""
        open_job.messages[f"out.{type(message).__name__}"] += 1
        return await self._ctx.send(peer, message)

    async def _announce(self, open_job: _OpenJob, shard: _Shard | None, window: float) -> None:
        """Gossip the job: to every shard (round 0), or a later round of one shard."""
        ctx, job = self._ctx, open_job.job
        announce = messages.JobAnnounced(
            job_id=job.id,
            job=job,
            requester_addrs=ctx.transport.direct_addrs,
            round=0 if shard is None else shard.round,
            window=window,
            shards=None if shard is None else [shard.index],
        )
        if shard is not None:
            shard.announced = True
        await self._gossip(open_job, announce)

    async def _gather_bids(self, open_job: _OpenJob, shard: _Shard, *, retry: bool = False) -> None:
        """Get ``concurrency`` accepted bids on ``shard``: by offers, then by gossip if
        they run out (``offer`` dispatch), or by gossip alone. While offers are
        declined for want of a free slot the shard queues: it offers again as nodes
        say a slot came free, until the spec's ``queue_timeout``. ``retry``: a run
        was lost, and its replacement is sought.

        Raises :class:`_JobFailed` with the reason when gossip's rounds pass too, or
        the queue timeout.
        """
        if self.dispatch == "offer":
            queue_until = open_job.started + open_job.job.spec.queue_timeout
            while True:
                if await self._offer(open_job, shard):
                    return
                if not shard.declined_full:
                    break
                await self._queue_for_slot(open_job, shard, queue_until)
            self._offers["fallbacks"] += 1
            await self._set_state(
                open_job,
                shard,
                JobState.BIDDING,
                "gossip_fallback",
                offered=len(shard.offered),
                accepted=len(shard.accepted),
            )
        # The job's own announce was the first round of its first attempt's bidding.
        announced = self.dispatch == "gossip" and shard.attempt == 0 and not retry
        await self._collect_bids(open_job, shard, first_round_announced=announced)

    async def _queue_for_slot(self, open_job: _OpenJob, shard: _Shard, until: float) -> None:
        """Wait in line until a node says a slot came free (the oldest waiter is woken
        first), or, first in line, until :data:`QUEUE_RETRY_S` passed; ready to offer
        again. Only the first in line offers on the timer: the others offering too
        would race it for each freed slot, and the line would not be first come,
        first served.

        Raises :class:`_JobFailed` once ``until`` (trio clock) has passed.
        """
        if not shard.queued:
            shard.queued = True
            await self._set_state(
                open_job, shard, JobState.BIDDING, "queued", offered=len(shard.offered)
            )
        # Its place in line: its job's submission, kept when it is woken and loses
        # the slot to another.
        ticket = (open_job.started, shard.index)
        while True:
            now = trio.current_time()
            if now >= until:
                queued = now - open_job.started
                raise _JobFailed(
                    f"queued {queued:.0f}s for a free slot (queue_timeout"
                    f" {open_job.job.spec.queue_timeout:g}s): {self._cluster_summary()}"
                )
            place = (ticket, trio.Event())
            bisect.insort(self._queue, place, key=lambda waiter: waiter[0])
            try:
                with trio.move_on_at(min(until, now + QUEUE_RETRY_S)):
                    await place[1].wait()
            finally:
                if not place[1].is_set():
                    self._queue.remove(place)
            if place[1].is_set() or not self._queue or self._queue[0][0] > ticket:
                return

    def _slot_freed(self, node: str, slots: int) -> bool:
        """``node`` has ``slots`` free: offers may go to it again, and as many queued
        shards as it has slots free try now, oldest first. Whether one did."""
        self._full.discard(node)
        self._hints.freed(node)
        woken = min(max(1, slots), len(self._queue))
        for _ in range(woken):
            self._queue.pop(0)[1].set()
        return woken > 0

    def _cluster_summary(self) -> str:
        size = self._ctx.membership.size
        return (
            f"{size} node(s) in the network, {len(self._full)} of them full at the last"
            f" offer, {len(self._queue)} other shard(s) waiting here"
        )

    async def _offer(self, open_job: _OpenJob, shard: _Shard) -> bool:
        """Offer ``shard`` to the best-ranked live nodes believed to have room, ``c``
        at a time: each decline, undelivered offer, or answer slower than
        :data:`OFFER_PATIENCE_S` brings an offer to the next, up to ``c`` +
        :data:`EXTRA_OFFERS` offers. Whether ``concurrency`` bids were accepted.

        Offers still in flight when this returns run on in the node's nursery: a late
        bid is then held or rejected like any other, so its slot is freed.
        """
        job = open_job.job
        exclude = shard.tried | shard.offered | shard.accepted
        if job.spec.deal.credibility:
            exclude |= self.credibility.excluded_nodes(now())
        ranked = self._hints.candidates(
            job.id, shard.index, job.spec, self._ctx.membership.members(), exclude=exclude
        )
        if shard.extra and job.spec.deal.credibility:
            ranked = self.credibility.rank(ranked)  # checks go to the best record first
        elif self._offer_first and not shard.extra:
            ranked = sorted(ranked, key=lambda node: node not in self._offer_first)
        membership = self._ctx.membership
        wanted = open_job.bids_wanted(shard)
        candidates = deque(spread_hosts(ranked, membership.host_of, wanted))
        budget = wanted + EXTRA_OFFERS
        in_flight = 0

        def enough() -> bool:
            return len(shard.accepted) >= open_job.runs(shard)

        def offer_next() -> None:
            nonlocal budget, in_flight
            if candidates and budget > 0 and not enough():
                budget -= 1
                in_flight += 1
                self._ctx.spawn(offer, candidates.popleft())

        async def offer(peer: str) -> None:
            nonlocal in_flight
            answered = trio.Event()

            async def patience() -> None:
                with trio.move_on_after(OFFER_PATIENCE_S):
                    await answered.wait()
                if not answered.is_set():
                    offer_next()

            self._ctx.spawn(patience)
            try:
                bid = await self._send_offer(open_job, shard, peer)
            finally:
                answered.set()
                in_flight -= 1
            if not bid:
                offer_next()
            open_job.changed.notify()

        shard.declined_full = False
        for _ in range(max(1, wanted - len(shard.accepted))):
            offer_next()
        if in_flight == 0 and self._full - exclude:
            # Every node that may take it is full: queue. A full node this shard may
            # not use (it ran the shard, or was caught forging) frees no slot for it.
            shard.declined_full = True

        await open_job.changed.wait_until(
            lambda: enough() or (in_flight == 0 and not (candidates and budget > 0))
        )
        return enough()

    async def _send_offer(self, open_job: _OpenJob, shard: _Shard, peer: str) -> bool:
        """Offer ``shard`` to ``peer`` and take its answer; whether it bid."""
        job = open_job.job
        shard.offered.add(peer)
        shard.answers[peer] = "no_answer"
        self._offers["sent"] += 1
        offer = messages.JobOffered(
            job_id=job.id, job=job, shard=shard.index, window=self._bid_window
        )
        open_job.messages["out.JobOffered"] += 1
        try:
            ack = await self._ctx.transport.send(peer, offer)
        except TransportError as exc:
            self._offers["undelivered"] += 1
            shard.answers[peer] = "unreachable"
            self._hints.unreachable(peer)
            await self._set_state(
                open_job, shard, shard.state, "offer_undelivered", peer=peer, reason=str(exc)
            )
            return False
        answer = ack.answer
        if answer is None or answer.job_id != job.id or answer.shard != shard.index:
            self._offers["undelivered"] += 1
            if ack.ok:
                self._ctx.transport.count_dropped("direct_bad_answer")
            log.info("offer of job %s to %s refused: %s", job.id, peer, ack.error or answer)
            shard.answers[peer] = "unreachable"
            return False
        open_job.messages[f"in.{type(answer).__name__}"] += 1
        if isinstance(answer, messages.OfferDeclined):
            self._offers["declined"] += 1
            shard.answers[peer] = answer.reason if answer.reason in ANSWERS else "no_answer"
            if answer.reason == "full":
                # Offered again once it says a slot came free, or a queued retry comes.
                shard.declined_full = True
                shard.offered.discard(peer)
                self._full.add(peer)
            self._hints.declined(peer, answer.reason, job.spec)
            why = answer.reason + (f": {answer.detail}" if answer.detail else "")
            await self._set_state(
                open_job, shard, shard.state, "offer_declined", peer=peer, reason=why
            )
            return False
        self._hints.bid(peer)
        shard.answers[peer] = "bid"
        if self._open.get(job.id) is not open_job:  # the job ended meanwhile
            self._ctx.spawn(self._reject_bid, open_job, shard, peer, "the job has ended")
        else:
            self._on_bid(open_job, shard, peer)
        return True

    async def _collect_bids(
        self, open_job: _OpenJob, shard: _Shard, *, first_round_announced: bool
    ) -> None:
        """Wait for ``c`` accepted bids, announcing a round (a later one with a doubled
        window each time one passes without them) unless ``first_round_announced``
        (the job's own announce was the first).

        Raises :class:`_JobFailed` with the reason once ``max_rounds`` windows passed.
        """
        window = self._bid_window
        for round_ in range(self._max_rounds):
            if round_ > 0 or not first_round_announced:
                shard.round += 1
                shard.round_bids.append(0)
                await self._announce(open_job, shard, window)
                await self._set_state(
                    open_job,
                    shard,
                    JobState.BIDDING,
                    "rebid",
                    window=window,
                    round=shard.round,
                    accepted=len(shard.accepted),
                )
            with trio.move_on_after(window):
                await open_job.changed.wait_until(
                    lambda: len(shard.accepted) >= open_job.runs(shard)
                )
            if len(shard.accepted) >= open_job.runs(shard):
                return
            shard.waited += window
            window *= 2
        raise _JobFailed(self._too_few_bids_reason(open_job, shard))

    async def _verify(self, open_job: _OpenJob, shard: _Shard) -> Verdict:
        """Ask the job's verifier, then (past the ``verdict`` gate) tell each rejected
        node and count the verdict in the nodes' credibility. A verdict that asks for
        more runs tells nobody anything yet. The verification latency runs from the
        last answer to the verdict."""
        spec = open_job.job.spec
        proposals = [Proposal(node, rid) for node, rid in sorted(shard.proposals.items())]
        verifier = VERIFIERS[spec.verifier]
        verdict = verifier.verify(proposals, self._policy(open_job, shard))
        gated = await self._gate(
            open_job,
            shard,
            "verdict",
            proposals=dict(shard.proposals),
            votes=dict(Counter(p.result_id for p in proposals)),
            accepted=sorted(verdict.accepted),
            rejected=verdict.rejected,
            failure=verdict.failure,
            more=verdict.more,
            why_more=verdict.why_more,
        )
        async with trio.open_nursery() as nursery:
            for node, reason in verdict.rejected.items():
                nursery.start_soon(self._tell_verdict, open_job, shard, node, reason)
        if verdict.accepted and verifier.checks and len(proposals) > 1:
            caught = verdict.rejected.keys()
            rows = self.credibility.record(verdict.accepted, caught, now())
            await self._ctx.db(self._ctx.store.put_credibility, rows)
        if not verdict.more:
            self._ctx.metrics.observe("verify", trio.current_time() - shard.last_answer_at - gated)
        return verdict

    def _policy(self, open_job: _OpenJob, shard: _Shard) -> Policy:
        """What the deal asks of ``shard``'s verdict now. A spot check is drawn at
        its first verdict only, from an unseeded source a bad actor cannot predict."""
        deal = open_job.job.spec.deal
        spot = False
        if shard.first_runs is None:  # the verifier checks only a unanimous result
            drawn = deal.spot_check > 0 and random.random() < deal.spot_check
            newcomers = deal.check_newcomers and all(
                self.credibility.is_new(node) for node in shard.proposals
            )
            spot = drawn or newcomers
        return Policy(
            confidence=deal.confidence,
            margin=deal.margin,
            extra_runs=shard.extra,
            max_extra_runs=deal.max_extra_runs,
            spot_check=spot,
            fresh_nodes=self._fresh(shard),
            network_size=self._ctx.membership.size,
        )

    async def _escalate(self, open_job: _OpenJob, shard: _Shard, verdict: Verdict) -> None:
        """Run ``shard`` on ``verdict.more`` fresh nodes besides the ones that ran it,
        keeping their proposals (README, verification: escalation); returns once
        those runs are accepted.

        Raises :class:`_JobFailed` if no fresh node takes them.
        """
        kind = "spot_check" if verdict.spot_check else "escalated"
        self._checks[kind] += 1
        self._checks["extra_runs"] += verdict.more
        if shard.first_runs is None:
            shard.first_runs = frozenset(shard.proposals)
        shard.extra += verdict.more
        await self._set_state(
            open_job,
            shard,
            JobState.BIDDING,
            kind,
            reason=verdict.why_more,
            more=verdict.more,
            extra_runs=shard.extra,
            max_extra_runs=open_job.job.spec.deal.max_extra_runs,
            first=sorted(shard.first_runs),
            votes=dict(Counter(shard.proposals.values())),
        )
        await self._gather_bids(open_job, shard, retry=True)
        await self._set_state(open_job, shard, JobState.RUNNING, "escalation_accepted")

    def _fresh(self, shard: _Shard) -> int:
        """How many nodes of the network have not run ``shard``."""
        return self._ctx.membership.size - len(shard.tried | shard.accepted)

    def _shunned(self, open_job: _OpenJob, node: str) -> bool:
        """Whether the job's deal keeps ``node`` out: caught forging lately."""
        return open_job.job.spec.deal.credibility and self.credibility.excluded(node, now())

    async def _publish(
        self, open_job: _OpenJob, shard: _Shard, verdict: Verdict, *, told_before: bool = False
    ) -> None:
        """Tell the accepted nodes to publish (past the ``publish`` gate) and wait for it.
        ``told_before``: an earlier life of this requester told them (and passed the
        gate), so the ones that have not published are only told again."""
        shard.results_accepted = set(verdict.accepted)
        # ResultsAccepted is the go-ahead to publish: in step mode it waits for the gate.
        if not told_before:
            await self._gate(
                open_job,
                shard,
                "publish",
                results={node: shard.proposals[node] for node in sorted(verdict.accepted)},
            )
        shard.verdict_at = trio.current_time()
        # Before the go-ahead: the first ResultsPublished may come back at once.
        await self._set_state(open_job, shard, JobState.PUBLISHING, "publishing")
        async with trio.open_nursery() as nursery:
            for node in verdict.accepted - shard.published.keys():
                nursery.start_soon(self._tell_verdict, open_job, shard, node, None)

        # An accepted node proposed, so an error from it now is a failure to publish.
        def waiting() -> set[str]:
            return shard.results_accepted - shard.published.keys() - shard.errors.keys()

        give_up = trio.current_time() + PUBLISH_TIMEOUT_S
        while waiting() and trio.current_time() < give_up:
            with trio.move_on_after(min(PUBLISH_RETELL_S, give_up - trio.current_time())):
                await open_job.changed.wait_until(lambda: not waiting())
            # Told again (a node publishes once however often it is told): the node
            # may have restarted, or the go-ahead got lost.
            again = messages.ResultsAccepted(job_id=open_job.job.id, shard=shard.index)
            for node in waiting():
                self._ctx.spawn(self._send, open_job, node, again)
        unpublished = shard.results_accepted - shard.published.keys()
        if unpublished:
            why = "; ".join(
                f"{node}: {shard.errors.get(node, f'nothing within {PUBLISH_TIMEOUT_S:.0f}s')}"
                for node in sorted(unpublished)
            )
            raise _JobFailed(f"accepted results were not published: {why}")
        self._ctx.metrics.observe("publish", trio.current_time() - shard.verdict_at)
        await self._set_state(open_job, shard, JobState.COMPLETED, "shard_completed")

    async def _gate(self, open_job: _OpenJob, shard: _Shard, gate: str, **behind: object) -> float:
        """In step mode, record what is behind ``gate`` and wait until :meth:`step`;
        the seconds it waited (0 when not in step mode)."""
        if not open_job.job.spec.step:
            return 0.0
        started = trio.current_time()
        shard.gate, shard.stepped = (gate, behind), trio.Event()
        await self._set_state(open_job, shard, shard.state, "gate", gate=gate, **behind)
        await shard.stepped.wait()
        shard.gate = None
        await self._set_state(open_job, shard, shard.state, "stepped", gate=gate)
        return trio.current_time() - started

    def waits_of(self, job_id: str) -> list[ShardWait]:
        """What was tried for each shard of ``job_id`` that still looks for nodes (none
        if the job is not open here): its offers' answers, gossip, its place in line."""
        open_job = self._open.get(job_id)
        if open_job is None:
            return []
        spec, size = open_job.job.spec, self._ctx.membership.size
        waits = []
        for shard in open_job.shards:
            if shard.state is not JobState.BIDDING:
                continue
            ticket = (open_job.started, shard.index)
            places = [i for i, (t, _) in enumerate(self._queue) if t == ticket]
            waits.append(
                ShardWait(
                    shard=shard.index,
                    image=spec.image,
                    engine=spec.engine,
                    wanted=open_job.runs(shard),
                    network_size=size,
                    answers=dict(shard.answers),
                    known_full=len(self._full),
                    round_bids=tuple(shard.round_bids),
                    queue=(places[0] + 1, len(self._queue)) if places else None,
                )
            )
        return waits

    def gates_of(self, job_id: str) -> list[tuple[int, str, dict[str, object]]]:
        """The gates ``job_id`` waits at now, as (shard, gate, what is behind it)."""
        open_job = self._open.get(job_id)
        if open_job is None:
            return []
        return [(s.index, *s.gate) for s in open_job.shards if s.gate is not None]

    def step(self, job_id: str) -> list[tuple[int, str]]:
        """Open every gate ``job_id`` waits at; the (shard, gate) pairs opened. Raises
        :class:`NotAtGate` if the job is not one of this node's open jobs or waits at
        no gate."""
        open_job = self._open.get(job_id)
        waiting = [s for s in open_job.shards if s.gate is not None] if open_job else []
        if not waiting:
            state = open_job.state.value if open_job is not None else "not open here"
            raise NotAtGate(f"job {job_id} is not waiting at a gate (state: {state})")
        opened = []
        for shard in waiting:
            assert shard.gate is not None
            opened.append((shard.index, shard.gate[0]))
            shard.stepped.set()
        return opened

    async def _tell_verdict(
        self, open_job: _OpenJob, shard: _Shard, node: str, rejected: str | None
    ) -> None:
        job_id = open_job.job.id
        if rejected is None:
            await self._record_execution(
                open_job, shard, node, ExecutionState.RESULTS_ACCEPTED, "results_accepted"
            )
            accept = messages.ResultsAccepted(job_id=job_id, shard=shard.index)
            await self._send(open_job, node, accept)
        else:
            await self._record_execution(
                open_job,
                shard,
                node,
                ExecutionState.RESULTS_REJECTED,
                "results_rejected",
                reason=rejected,
            )
            reject = messages.ResultsRejected(job_id=job_id, shard=shard.index, reason=rejected)
            await self._send(open_job, node, reject)

    async def _fail(self, open_job: _OpenJob, reason: str) -> None:
        log.info("job %s failed: %s", open_job.job.id, reason)
        await self._end(open_job, JobState.ERROR, "error", reason)

    async def _end(self, open_job: _OpenJob, state: JobState, kind: str, reason: str) -> None:
        """End the job in ``state`` before its course completed: record ``kind`` and
        tell every node holding a bid or an unpublished run of it to stop."""
        with trio.CancelScope(shield=True):
            await self._set_state(
                open_job,
                None,
                state,
                kind,
                reason=reason,
                messages=dict(open_job.messages),
            )
            cancel = messages.Cancelled(job_id=open_job.job.id, reason=reason)
            told: set[str] = set()
            for shard in open_job.shards:
                self._answer_held(open_job, shard, reason)
                told |= shard.accepted - shard.published.keys()
            for node in told:
                self._ctx.spawn(self._send, open_job, node, cancel)

    def _too_few_bids_reason(self, open_job: _OpenJob, shard: _Shard) -> str:
        spec, got = open_job.job.spec, len(shard.bidders - shard.tried)
        rounds = f"{self._max_rounds} round(s) of bidding ({shard.waited:g}s)"
        fresh = " fresh" if shard.attempt else ""
        if got == 0:
            what = f"image {spec.image!r}" if spec.engine == "docker" else f"engine {spec.engine!r}"
            if shard.attempt:
                return (
                    f"no fresh node bid in {rounds} of re-run {shard.attempt}"
                    f" ({len(shard.tried)} node(s) ran it before)"
                )
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
        return (
            f"{needs} but only {got}{fresh} node(s) bid in {rounds} ({size} nodes in the network)"
        )

    @staticmethod
    def _all_failed_reason(shard: _Shard) -> str:
        errors = sorted(set(shard.errors.values()))
        count = len(shard.errors)
        return f"all {count} node(s) failed: " + "; ".join(errors)

    # -- recording -------------------------------------------------------------

    def _reach(self, open_job: _OpenJob, phase: Phase) -> None:
        """The job reached the end of ``phase`` (timed from its submission): observed
        the first time only."""
        if phase not in open_job.reached:
            open_job.reached.add(phase)
            self._ctx.metrics.observe(phase, trio.current_time() - open_job.started)

    async def _set_state(
        self,
        open_job: _OpenJob,
        shard: _Shard | None,
        state: JobState,
        kind: str,
        reason: str | None = None,
        **detail: object,
    ) -> None:
        """Record ``kind``: of ``shard`` (which moves to ``state``; the job moves to its
        least advanced shard's state) or, with no shard, of the job (to ``state``).
        Once the job has ended, ``kind`` is recorded and no state moves: a straggler
        (an offer that failed after the job completed) must not reopen it."""
        ended = open_job.state.terminal
        if not ended:
            if shard is None:
                open_job.state = state
            else:
                shard.state = state
                # Only the job's own "completed" event completes it: a poller that sees
                # the state must find that event too.
                states = [s.state for s in open_job.shards]
                open_job.state = min([*states, JobState.PUBLISHING], key=_PROGRESS.index)
        if reason is not None:
            detail["reason"] = reason
        index = None if shard is None else shard.index
        event = self._ctx.event(
            open_job.job.id, kind, shard=index, state=open_job.state.value, **detail
        )
        await self._ctx.db(
            self._ctx.store.record,
            event,
            state=None if ended else open_job.state,
            reason=reason if shard is None and not ended else None,
        )
        if not ended:
            open_job.changed.notify()

    async def _record_execution(
        self,
        open_job: _OpenJob,
        shard: _Shard,
        node: str,
        state: ExecutionState,
        kind: str,
        **fields: object,
    ) -> None:
        detail = {k: v for k, v in fields.items() if k != "stdout_preview"}
        event = self._ctx.event(open_job.job.id, kind, shard=shard.index, peer=node, **detail)
        for detail_only in ("run_ms", "phases_ms", "publish_ms"):
            fields.pop(detail_only, None)
        execution = Execution(
            job_id=open_job.job.id,
            shard=shard.index,
            node=node,
            state=state,
            updated_at=event.at,
            **fields,
        )
        await self._ctx.db(self._ctx.store.record, event, execution=execution)


class NotAtGate(Exception):
    """A step was asked of a job that is not waiting at a gate."""


class JobNotOpen(Exception):
    """The job is not open on this requester: it ended, or another node requested it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} is not open on this requester")
        self.job_id = job_id


class _JobFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
