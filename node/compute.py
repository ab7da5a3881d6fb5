"""The compute role: bids on announced jobs, runs accepted shards, proposes and publishes.

A node bids only when it has the job's engine and image; the bidder decides
when. A full node waits its turn for a slot (until bidding closes or the round's
window ends) rather than dropping the job, so a burst of jobs queues instead of
failing. A bid holds a slot until the requester answers or the answer is
overdue; a run holds it until its container is gone. Results are proposed to
the requester and published only once the requester accepts them.
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import trio

from node import messages
from node.badactor import forge_results
from node.bandstep import BandStep
from node.bidder import Bidder
from node.capacity import Capacity
from node.context import NodeContext
from node.executors.base import Executor, ExecutorError
from node.messages import Ack, Message
from node.models import Execution, ExecutionState, Job, JobState
from node.publishers import Publisher
from node.results import ResultStore
from node.transport import TransportError

log = logging.getLogger(__name__)

STDOUT_PREVIEW_BYTES = 4096
# How long past the bid window a bid waits for the requester's answer.
ANSWER_GRACE_S = 10.0
MAX_KNOWN_JOBS = 10_000
# Closes heard before their job's announce (gossip paths differ), kept to honour.
MAX_EARLY_CLOSES = 1_000


@dataclass(frozen=True, slots=True)
class ComputeStatistics:
    """``bids_sent`` since the node started; ``running``: shards executing here now."""

    bids_sent: int
    running: int


@dataclass
class _KnownJob:
    job: Job
    window: float
    round: int = 0
    closed: trio.Event = field(default_factory=trio.Event)
    pending: bool = False  # a bid is waiting out its band
    bid: bool = False  # this node has bid (once per job)
    answered: trio.Event = field(default_factory=trio.Event)
    answer_by: float = 0.0  # trio clock: give up waiting for the requester's answer
    heard_at: float = 0.0  # trio clock: when the first announce came
    accepted: bool = False
    result_id: str | None = None
    run_scope: trio.CancelScope | None = None


class Compute:
    """This node's compute side. Runs on the node's trio loop only."""

    def __init__(
        self,
        ctx: NodeContext,
        *,
        executors: dict[str, Executor],
        publishers: dict[str, Publisher],
        bidder: Bidder,
        band_step: BandStep,
        capacity: Capacity,
        results: ResultStore,
        work_dir: Path,
        bad_actor: bool = False,
    ) -> None:
        self._ctx = ctx
        self._executors = executors
        self._publishers = publishers
        self._bidder = bidder
        self.band_step = band_step
        self.capacity = capacity
        self._results = results
        self._work_dir = work_dir
        self._known: OrderedDict[str, _KnownJob] = OrderedDict()
        self._early_closes: OrderedDict[str, str] = OrderedDict()  # job id -> requester
        self.bids_sent = 0
        self.bad_actor = bad_actor
        self._running = 0

    def statistics(self) -> ComputeStatistics:
        return ComputeStatistics(bids_sent=self.bids_sent, running=self._running)

    def requester_of(self, job_id: str) -> str | None:
        known = self._known.get(job_id)
        return known.job.requester if known else None

    # -- gossip ----------------------------------------------------------------

    async def on_announced(self, announce: messages.JobAnnounced) -> None:
        """A new job, or a ``Rebid`` (a later round) of one this node has not bid on."""
        job = announce.job
        known = self._known.get(job.id)
        mine = job.requester == self._ctx.node_id
        if known is None and not mine and await self._ctx.db(self._ctx.store.get_job, job.id):
            # Seen before this process started: gossipsub replays recent messages to
            # a peer that (re)connects, and a restarted node must not bid again.
            return
        if known is None:
            known = _KnownJob(job, announce.window, announce.round, heard_at=trio.current_time())
            if self._early_closes.pop(job.id, None) == job.requester:
                known.closed.set()  # its BiddingClosed came first: nothing to bid on
            self._known[job.id] = known
            while len(self._known) > MAX_KNOWN_JOBS:
                self._known.popitem(last=False)
            if not mine:
                try:
                    self._ctx.transport.remember_addrs(job.requester, announce.requester_addrs)
                except ValueError as exc:
                    self._ctx.transport.count_dropped("gossip_bad_addrs")
                    log.info("announce of job %s: %s", job.id, exc)
                    del self._known[job.id]
                    return
        elif announce.round <= known.round:
            return
        known.round, known.window = announce.round, announce.window
        if known.bid:
            # Still bidding: a requester waiting for min_bids holds bids across rounds.
            known.answer_by = trio.current_time() + announce.window + ANSWER_GRACE_S
            return
        if known.pending or known.closed.is_set():
            return
        executor = self._executors.get(job.spec.engine)
        if not self.capacity.fits_ever(job.spec.resources):
            return  # more CPU or memory than this node has: never bid
        if executor is None or not await executor.has_image(job.spec.image):
            return
        members = self._ctx.membership.members()
        delay = self._bidder.bid_delay(
            self._ctx.node_id, job, 0, members, step=self.band_step.current
        )
        if delay is None:
            return
        # A rebid's window is wider and the first bands had their chance: close up.
        known.pending = True
        self._ctx.spawn(self._bid, known, delay / (2**announce.round))

    def on_bidding_closed(self, closed: messages.BiddingClosed) -> None:
        known = self._known.get(closed.job_id)
        if known is None:
            self._early_closes[closed.job_id] = closed.requester
            while len(self._early_closes) > MAX_EARLY_CLOSES:
                self._early_closes.popitem(last=False)
            return
        if known.job.requester != closed.requester:
            return  # not the job's own requester: the validator checked only the claim
        if not known.closed.is_set():
            known.closed.set()
            if known.round == 0:  # a rebid's close says how long nodes were busy
                self.band_step.observe(trio.current_time() - known.heard_at)

    # -- bidding ---------------------------------------------------------------

    async def _bid(self, known: _KnownJob, delay: float) -> None:
        """Wait out this node's band, then for a slot, then bid; unless bidding closed."""
        with trio.move_on_after(delay):
            await known.closed.wait()
        job = known.job
        if known.closed.is_set() or known.bid or not await self._reserve_slot(known):
            known.pending = False
            return
        known.pending = False
        known.bid = True
        ctx = self._ctx
        if job.requester != ctx.node_id:
            await ctx.db(ctx.store.put_job, job, role="compute", state=JobState.BIDDING)
        await self._record(job, ExecutionState.BID, "bid")
        self.bids_sent += 1
        try:
            ack = await ctx.transport.send(job.requester, messages.Bid(job_id=job.id))
        except TransportError as exc:
            # Not delivered (or not acked in time, which the requester takes as a
            # duplicate if it did arrive): the next round may bid again.
            known.bid = False
            self.capacity.release(job.id, 0)
            log.warning("bid on job %s not delivered: %s", job.id, exc)
            await self._record(job, ExecutionState.ERROR, "error", reason=str(exc))
            return
        if not ack.ok:  # e.g. a late bid: the job ended before it arrived
            self.capacity.release(job.id, 0)
            await self._record(job, ExecutionState.REJECTED, "bid_refused", reason=ack.error)
            return
        known.answer_by = trio.current_time() + known.window + ANSWER_GRACE_S
        while not known.answered.is_set() and trio.current_time() < known.answer_by:
            with trio.move_on_at(known.answer_by):
                await known.answered.wait()
        if not known.answered.is_set():
            self.capacity.release(job.id, 0)
            await self._record(job, ExecutionState.ERROR, "error", reason="no answer to our bid")

    async def _reserve_slot(self, known: _KnownJob) -> bool:
        """Reserve the job's resources, waiting in line for them until bidding
        closes or the round's window ends (the requester rebids after it, and a
        later round starts a fresh wait). Whether it holds them."""
        job = known.job
        with trio.move_on_after(known.window):
            async with trio.open_nursery() as nursery:

                async def stop_when_closed() -> None:
                    await known.closed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop_when_closed)
                await self.capacity.reserve(job.id, 0, job.spec.resources)
                nursery.cancel_scope.cancel()
        if known.closed.is_set():
            self.capacity.release(job.id, 0)
        return self.capacity.holds(job.id, 0)

    # -- direct messages from the requester ----------------------------------

    async def on_message(self, sender: str, message: Message) -> Ack:
        """Handle a direct message whose sender the node has checked is the requester."""
        known = self._known.get(message.job_id)
        if known is None or not known.bid:
            return Ack(False, f"this node has no bid on job {message.job_id}")
        job = known.job
        match message:
            case messages.BidAccepted():
                if not known.answered.is_set():
                    known.accepted = True
                    known.answered.set()
                    await self._record(job, ExecutionState.ACCEPTED, "bid_accepted")
                    self._ctx.spawn(self._run, known)
            case messages.BidRejected():
                if not known.answered.is_set():
                    known.answered.set()
                    self.capacity.release(job.id, 0)
                    await self._record(
                        job, ExecutionState.REJECTED, "bid_rejected", reason=message.reason
                    )
            case messages.ResultsAccepted():
                self._ctx.spawn(self._publish, known)
            case messages.ResultsRejected():
                await self._record(
                    job, ExecutionState.RESULTS_REJECTED, "results_rejected", reason=message.reason
                )
            case messages.Cancelled():
                known.answered.set()
                if known.run_scope is not None:
                    known.run_scope.cancel()
                self.capacity.release(job.id, 0)
                await self._record(job, None, "cancelled", reason=message.reason)
            case _:
                return Ack(False, f"a compute node does not take {type(message).__name__}")
        return Ack(True)

    # -- running and publishing -----------------------------------------------

    async def _run(self, known: _KnownJob) -> None:
        job, ctx = known.job, self._ctx
        work = self._work_dir / job.id / "0"
        self._running += 1
        try:
            with trio.CancelScope() as scope:
                known.run_scope = scope
                await self._record(job, ExecutionState.RUNNING, "running")
                executor = self._executors[job.spec.engine]
                labels = {"py-bacalhau.node": ctx.node_id, "py-bacalhau.job": job.id}
                try:
                    started = trio.current_time()
                    result = await executor.run(job.id, 0, job.spec, work, labels=labels)
                    run_seconds = trio.current_time() - started
                    if self.bad_actor:
                        await trio.to_thread.run_sync(forge_results, work)
                    known.result_id = await trio.to_thread.run_sync(self._results.put, work)
                except ExecutorError as exc:
                    await self._record(job, ExecutionState.ERROR, "error", reason=str(exc))
                    await ctx.send(
                        job.requester, messages.ComputeError(job_id=job.id, message=str(exc))
                    )
                    return
                preview = (work / "stdout").read_bytes()[:STDOUT_PREVIEW_BYTES]
            if scope.cancelled_caught:
                return
        finally:
            self._running -= 1
            known.run_scope = None
            self.capacity.release(job.id, 0)
            await trio.to_thread.run_sync(shutil.rmtree, work, True)
        await self._record(
            job,
            ExecutionState.PROPOSED,
            "proposed",
            result_id=known.result_id,
            exit_code=result.exit_code,
        )
        await ctx.send(
            job.requester,
            messages.ResultsProposed(
                job_id=job.id,
                shard=0,
                result_id=known.result_id,
                exit_code=result.exit_code,
                stdout_preview=preview.decode("utf-8", "replace"),
                run_seconds=run_seconds,
            ),
        )

    async def _publish(self, known: _KnownJob) -> None:
        job = known.job
        if known.result_id is None:
            return
        published = await self._publishers[job.spec.publisher].publish(known.result_id)
        await self._record(
            job,
            ExecutionState.PUBLISHED,
            "published",
            result_id=published.result_id,
            result_url=published.location,
        )
        await self._ctx.send(
            job.requester,
            messages.ResultsPublished(
                job_id=job.id, shard=0, result_id=published.result_id, location=published.location
            ),
        )

    async def _record(
        self, job: Job, state: ExecutionState | None, kind: str, **fields: object
    ) -> None:
        """Record this node's step; on a job it did not request, move the job's state too."""
        ctx = self._ctx
        event = ctx.event(job.id, kind, shard=0, role="compute", **fields)
        execution = None
        if state is not None:
            execution = Execution(
                job_id=job.id, shard=0, node=ctx.node_id, state=state, updated_at=event.at, **fields
            )
        job_state = _COMPUTE_JOB_STATE.get(kind) if job.requester != ctx.node_id else None
        await ctx.db(ctx.store.record, event, state=job_state, execution=execution)


# How a compute-only node's view of a job follows its own execution.
_COMPUTE_JOB_STATE: dict[str, JobState] = {
    "bid_refused": JobState.CANCELLED,
    "bid_rejected": JobState.CANCELLED,
    "running": JobState.RUNNING,
    "proposed": JobState.VERIFYING,
    "published": JobState.COMPLETED,
    "error": JobState.ERROR,
    "cancelled": JobState.CANCELLED,
}
