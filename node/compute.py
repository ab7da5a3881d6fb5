"""The compute role: bids on offered and announced jobs, runs accepted shards,
proposes and publishes.

A node bids only when it has the job's engine and image and room for it. An
offered shard (``JobOffered``) is answered at once, in the offer's own ack: a
bid if a slot is free now, else a decline with the reason, so the requester can
offer the next node. On a gossiped shard the bidder decides when to bid, and a
full node waits its turn for a slot (until bidding closes or the round's window
ends) rather than dropping the job, so a burst of jobs queues instead of
failing. A bid holds a slot until the requester answers or the answer is
overdue; a run holds it until its container is gone. Results are proposed to
the requester and published only once the requester accepts them.
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from node import messages
from node.badactor import Forgery, forge_results
from node.bandstep import BandStep
from node.bidder import Bidder
from node.capacity import Capacity
from node.content import ContentError
from node.content.store import BlockNotFound
from node.context import NodeContext
from node.executors.base import Executor, ExecutorError
from node.executors.docker import JOB_LABEL, NODE_LABEL
from node.jobinputs import mounts_of, shard_plan
from node.messages import Ack, Message
from node.models import (
    RESULTS_GRACE_S,
    Execution,
    ExecutionState,
    Job,
    JobState,
    SpecError,
)
from node.output import OutputSender
from node.p2p.exchange import Exchange, FetchError
from node.p2p.transport import TransportError
from node.publishers import Publisher, PublishError
from node.results import ResultStore
from node.sealing import seal
from node.sharding import InputError, write_inputs

log = logging.getLogger(__name__)

STDOUT_PREVIEW_BYTES = 4096
# How long past the bid window a bid waits for the requester's answer.
ANSWER_GRACE_S = 10.0
MAX_KNOWN_JOBS = 10_000
# Closes heard before their job's announce (gossip paths differ), kept to honour.
MAX_EARLY_CLOSES = 1_000
INPUT_FETCH_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class ComputeStatistics:
    """``bids_sent`` since the node started; ``running``: shards executing here now."""

    bids_sent: int
    running: int


@dataclass
class _KnownShard:
    """This node's part in one shard of a job it heard of."""

    index: int
    window: float
    round: int = 0
    heard_at: float = 0.0  # trio clock: when this shard was first announced
    closed: trio.Event = field(default_factory=trio.Event)
    pending: bool = False  # a bid is waiting out its band
    bid: bool = False  # this node's bid stands (again only after a rejection)
    answered: trio.Event = field(default_factory=trio.Event)
    answer_by: float = 0.0  # trio clock: give up waiting for the requester's answer
    accepted: bool = False
    result_id: str | None = None
    run_scope: trio.CancelScope | None = None
    publishing: bool = False  # told to publish: a repeated go-ahead is the same one
    proposal: messages.ResultsProposed | None = None  # sent again when a requester asks


@dataclass
class _KnownJob:
    job: Job
    shards: dict[int, _KnownShard] = field(default_factory=dict)


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
        forgery: Forgery | None = None,
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
        # Closes heard before their job's announce: (job id, shard) -> requester.
        self._early_closes: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.bids_sent = 0
        self.forgery = forgery  # None: an honest node
        self._running = 0
        # Set by the node once its block exchange runs; jobs with inputs need it.
        self.exchange: Exchange | None = None
        # Requesters this node declined as full, owed word of a free slot: requester ->
        # the job it declined.
        self._owed: OrderedDict[str, str] = OrderedDict()
        self._telling = False  # a _tell_freed task runs

    def statistics(self) -> ComputeStatistics:
        return ComputeStatistics(bids_sent=self.bids_sent, running=self._running)

    def _release(self, job_id: str, shard: int) -> None:
        """Give back ``shard``'s slot; tell the requesters this node declined as full
        that one is free (each once, until it declines them again)."""
        self.capacity.release(job_id, shard)
        if self._owed and not self._telling:
            self._telling = True
            self._ctx.spawn(self._tell_freed)

    async def _tell_freed(self) -> None:
        """While slots are free, tell the requesters owed word of one, the longest
        owed first, until as many as there are free slots said they will offer."""
        told = 0
        try:
            while self._owed and told < self.capacity.statistics().free:
                requester, declined = self._owed.popitem(last=False)
                freed = messages.SlotFreed(job_id=declined, slots=1)
                try:
                    ack = await self._ctx.transport.send(requester, freed)
                except TransportError as exc:
                    log.info("no word of a free slot to %s: %s", requester, exc)
                    continue
                told += ack.ok  # not ok: nothing of theirs waits any more
        finally:
            self._telling = False

    def requester_of(self, job_id: str) -> str | None:
        known = self._known.get(job_id)
        return known.job.requester if known else None

    async def resume(self) -> None:
        """Settle what an earlier life of this node left: remove its containers, and
        tell each requester which of its runs were lost so they run again at once.
        A proposal already made stands: the node remembers it and publishes it when
        told. Runs once the transport is up."""
        for executor in self._executors.values():
            removed = await executor.remove_leftovers(self._ctx.node_id)
            if removed:
                log.info("removed %d container(s) of an earlier life", removed)
        me = self._ctx.node_id
        for record in await self._ctx.db(self._ctx.store.open_jobs, "compute"):
            job = record.job
            mine = [e for e in record.executions if e.node == me]
            known = self._remember(job)
            for execution in mine:
                if execution.state is ExecutionState.PROPOSED and execution.result_id:
                    shard = known.shards[execution.shard] = _KnownShard(execution.shard, 0.0)
                    shard.bid = shard.accepted = True
                    shard.answered.set()
                    shard.result_id = execution.result_id
                elif execution.state in _LOST_ON_RESTART:
                    self._ctx.spawn(self._report_lost, job, execution.shard)
            if not known.shards:
                await self._record(job, None, None, "lost", reason=_RESTARTED)

    async def _report_lost(self, job: Job, index: int) -> None:
        await self._record(job, index, ExecutionState.ERROR, "lost", reason=_RESTARTED)
        lost = messages.ExecutionLost(job_id=job.id, shard=index, reason=_RESTARTED)
        await self._deliver(job, lost)

    # -- gossip ----------------------------------------------------------------

    async def on_announced(self, announce: messages.JobAnnounced) -> None:
        """A new job, or a later round of bidding on some of its shards (a ``Rebid``,
        or a re-run on fresh nodes)."""
        job = announce.job
        known = self._known.get(job.id)
        mine = job.requester == self._ctx.node_id
        if known is None and not mine and await self._ctx.db(self._ctx.store.get_job, job.id):
            # Seen before this process started: gossipsub replays recent messages to
            # a peer that (re)connects, and a restarted node must not bid again.
            return
        indices = range(job.shards) if announce.shards is None else announce.shards
        if any(not 0 <= k < job.shards for k in indices):
            self._ctx.transport.count_dropped("gossip_bad_shard")
            return
        if known is None:
            if not mine:
                try:
                    self._ctx.transport.remember_addrs(job.requester, announce.requester_addrs)
                except ValueError as exc:
                    self._ctx.transport.count_dropped("gossip_bad_addrs")
                    log.info("announce of job %s: %s", job.id, exc)
                    return
            known = self._remember(job)
        eligible: bool | None = None  # whether this node can run the job at all
        for index in indices:
            shard = self._heard(known, index, announce)
            if shard is None or shard.pending or shard.closed.is_set():
                continue
            if eligible is None:
                eligible = await self._can_run(job)
            if not eligible:
                return
            members = self._ctx.membership.members()
            delay = self._bidder.bid_delay(
                self._ctx.node_id, job, index, members, step=self.band_step.current
            )
            if delay is None:
                continue
            # A later round's window is wider and the first bands had their chance: close up.
            shard.pending = True
            self._ctx.spawn(self._bid, known, shard, delay / (2**announce.round))

    def _heard(
        self, known: _KnownJob, index: int, announce: messages.JobAnnounced
    ) -> _KnownShard | None:
        """Note a round of ``index``; the shard if this node may bid on it now."""
        shard = known.shards.get(index)
        if shard is None:
            now = trio.current_time()
            shard = known.shards[index] = _KnownShard(index, announce.window, announce.round, now)
            if self._early_closes.pop((known.job.id, index), None) == known.job.requester:
                shard.closed.set()  # its BiddingClosed came first: nothing to bid on
            return shard
        if announce.round <= shard.round:
            return None
        shard.round, shard.window = announce.round, announce.window
        if shard.bid:
            # Still bidding: a requester waiting for min_bids holds bids across rounds.
            shard.answer_by = trio.current_time() + announce.window + ANSWER_GRACE_S
            return None
        if shard.closed.is_set():
            shard.closed = trio.Event()  # a re-run on fresh nodes reopens the shard
        return shard

    async def _can_run(self, job: Job) -> bool:
        executor = self._executors.get(job.spec.engine)
        if not self.capacity.fits_ever(job.spec.resources):
            return False  # more CPU or memory than this node has: never bid
        return executor is not None and await executor.has_image(job.spec.image)

    def on_bidding_closed(self, closed: messages.BiddingClosed) -> None:
        known = self._known.get(closed.job_id)
        shard = known.shards.get(closed.shard) if known is not None else None
        if known is None or shard is None:
            self._early_closes[(closed.job_id, closed.shard)] = closed.requester
            while len(self._early_closes) > MAX_EARLY_CLOSES:
                self._early_closes.popitem(last=False)
            return
        if known.job.requester != closed.requester:
            return  # not the job's own requester: the validator checked only the claim
        if not shard.closed.is_set():
            shard.closed.set()
            if shard.round == 0:  # a rebid's close says how long nodes were busy
                self.band_step.observe(trio.current_time() - shard.heard_at)

    # -- bidding ---------------------------------------------------------------

    async def _bid(self, known: _KnownJob, shard: _KnownShard, delay: float) -> None:
        """Wait out this node's band, then for a slot, then bid; unless bidding closed."""
        with trio.move_on_after(delay):
            await shard.closed.wait()
        job, index = known.job, shard.index
        if shard.closed.is_set() or shard.bid or not await self._reserve_slot(job, shard):
            shard.pending = False
            return
        shard.pending = False
        self._stand_bid(job, shard)
        ctx = self._ctx
        try:
            ack = await ctx.transport.send(job.requester, messages.Bid(job_id=job.id, shard=index))
        except TransportError as exc:
            # Not delivered (or not acked in time, which the requester takes as a
            # duplicate if it did arrive): the next round may bid again.
            shard.bid = False
            self._release(job.id, index)
            log.warning("bid on job %s shard %d not delivered: %s", job.id, index, exc)
            await self._record(job, index, ExecutionState.ERROR, "error", reason=str(exc))
            return
        if not ack.ok:  # e.g. a late bid: the job ended before it arrived
            self._release(job.id, index)
            await self._record(job, index, ExecutionState.REJECTED, "bid_refused", reason=ack.error)
            return
        await self._await_answer(job, shard)

    def _stand_bid(self, job: Job, shard: _KnownShard) -> None:
        """This node bids on ``shard`` (its slot is reserved): note it, and queue its
        records without waiting (they land before any later record of the job)."""
        shard.bid = True
        shard.answered = trio.Event()
        ctx = self._ctx
        if job.requester != ctx.node_id:
            ctx.db_soon(ctx.store.put_job, job, role="compute", state=JobState.BIDDING)
        ctx.db_soon(self._record_call(job, shard.index, ExecutionState.BID, "bid"))
        self.bids_sent += 1

    async def _await_answer(self, job: Job, shard: _KnownShard) -> None:
        """Hold the bid's slot until the requester answers, or give it back once the
        answer is overdue (``answer_by``, which a later round may push back)."""
        shard.answer_by = trio.current_time() + shard.window + ANSWER_GRACE_S
        while not shard.answered.is_set() and trio.current_time() < shard.answer_by:
            with trio.move_on_at(shard.answer_by):
                await shard.answered.wait()
        if not shard.answered.is_set():
            self._release(job.id, shard.index)
            await self._record(
                job, shard.index, ExecutionState.ERROR, "error", reason="no answer to our bid"
            )

    # -- offers ----------------------------------------------------------------

    async def on_offered(self, offer: messages.JobOffered) -> Ack:
        """Answer an offer at once: a :class:`~node.messages.Bid` if this node can run
        the shard and has a slot free now (reserved for it), else an
        :class:`~node.messages.OfferDeclined` saying why. The sender was checked to be
        the job's requester."""
        job, index = offer.job, offer.shard
        if not 0 <= index < job.shards:
            self._ctx.transport.count_dropped("direct_bad_shard")
            return Ack(False, f"job {job.id} has no shard {index}")
        known = self._known.get(job.id)
        if known is None:
            known = self._remember(job)
        shard = known.shards.get(index)
        if shard is None:
            now = trio.current_time()
            shard = known.shards[index] = _KnownShard(index, offer.window, 0, now)
        elif shard.bid:  # a retried offer: the bid stands
            return Ack(True, answer=messages.Bid(job_id=job.id, shard=index))

        def decline(reason: messages.DeclineReason, detail: str = "") -> Ack:
            answer = messages.OfferDeclined(
                job_id=job.id, shard=index, reason=reason, detail=detail
            )
            return Ack(True, answer=answer)

        if shard.result_id is not None or shard.accepted:
            return decline("ran_before")
        spec = job.spec
        executor = self._executors.get(spec.engine)
        if executor is None:
            return decline("no_image", f"no {spec.engine!r} engine on this node")
        if not self.capacity.fits_ever(spec.resources):
            return decline("too_big", f"{spec.resources} exceeds what this node offers")
        if not await executor.has_image(spec.image):
            return decline("no_image", f"no image {spec.image!r} on this node")
        if not self.capacity.try_reserve(job.id, index, spec.resources):
            # Owed longest first: a requester already owed keeps its place.
            self._owed.setdefault(job.requester, job.id)
            return decline("full", f"all {self.capacity.statistics().slots} slot(s) busy")
        shard.window = offer.window
        self._stand_bid(job, shard)
        self._ctx.spawn(self._await_answer, job, shard)
        return Ack(True, answer=messages.Bid(job_id=job.id, shard=index))

    def _remember(self, job: Job) -> _KnownJob:
        known = self._known[job.id] = _KnownJob(job)
        while len(self._known) > MAX_KNOWN_JOBS:
            self._known.popitem(last=False)
        return known

    async def _reserve_slot(self, job: Job, shard: _KnownShard) -> bool:
        """Reserve the job's resources, waiting in line for them until bidding
        closes or the round's window ends (the requester rebids after it, and a
        later round starts a fresh wait). Whether it holds them."""
        with trio.move_on_after(shard.window):
            async with trio.open_nursery() as nursery:

                async def stop_when_closed() -> None:
                    await shard.closed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop_when_closed)
                await self.capacity.reserve(job.id, shard.index, job.spec.resources)
                nursery.cancel_scope.cancel()
        if shard.closed.is_set():
            self._release(job.id, shard.index)
        return self.capacity.holds(job.id, shard.index)

    # -- direct messages from the requester ----------------------------------

    async def on_message(self, sender: str, message: Message) -> Ack:
        """Handle a direct message whose sender the node has checked is the requester."""
        known = self._known.get(message.job_id)
        if isinstance(message, messages.Status):
            return Ack(True, answer=self._status(known, message.shard))
        if known is not None and isinstance(message, messages.Cancelled):
            await self._cancel(known, message.reason, message.shards)
            return Ack(True)
        shard = known.shards.get(getattr(message, "shard", 0)) if known is not None else None
        if known is None or shard is None or not shard.bid:
            return Ack(False, f"this node has no bid on job {message.job_id}")
        job, index = known.job, shard.index
        match message:
            case messages.BidAccepted():
                if not shard.answered.is_set():
                    shard.accepted = True
                    shard.answered.set()
                    await self._record(job, index, ExecutionState.ACCEPTED, "bid_accepted")
                    self._ctx.spawn(self._run, known, shard)
            case messages.BidRejected():
                if not shard.answered.is_set():
                    shard.answered.set()
                    shard.bid = False  # a later round (a re-run) may take this node
                    self._release(job.id, index)
                    await self._record(
                        job, index, ExecutionState.REJECTED, "bid_rejected", reason=message.reason
                    )
            case messages.ResultsAccepted():
                if not shard.publishing:
                    shard.publishing = True
                    self._ctx.spawn(self._publish, known, shard)
            case messages.ResultsRejected():
                await self._record(
                    job,
                    index,
                    ExecutionState.RESULTS_REJECTED,
                    "results_rejected",
                    reason=message.reason,
                )
            case _:
                return Ack(False, f"a compute node does not take {type(message).__name__}")
        return Ack(True)

    async def _cancel(self, known: _KnownJob, reason: str, shards: list[int] | None) -> None:
        """Stop ``shards`` of the job (all of them for None): answer pending bids, stop
        running containers (the executor removes them), give back their slots."""
        job = known.job
        for shard in known.shards.values():
            if shards is not None and shard.index not in shards:
                continue
            shard.answered.set()
            shard.bid = False
            if shard.run_scope is not None:
                shard.run_scope.cancel()
            self._release(job.id, shard.index)
        if shards is None:
            await self._record(job, None, None, "cancelled", reason=reason)
        else:
            for index in shards:
                await self._record(job, index, ExecutionState.ERROR, "stopped", reason=reason)

    # -- running and publishing -----------------------------------------------

    async def _run(self, known: _KnownJob, shard: _KnownShard) -> None:
        job, ctx, index = known.job, self._ctx, shard.index
        work = self._work_dir / job.id / str(index)
        inputs = self._work_dir / job.id / f"{index}.inputs"
        self._running += 1
        proposal: messages.ResultsProposed | None = None
        try:
            with trio.CancelScope() as scope:
                shard.run_scope = scope
                ctx.db_soon(self._record_call(job, index, ExecutionState.RUNNING, "running"))
                sender = OutputSender(job.id, index, partial(self._send_output, job))
                async with trio.open_nursery() as beating:
                    beating.start_soon(self._heartbeat, job, index)
                    beating.start_soon(sender.run)
                    proposal = await self._execute(job, index, work, inputs, shard, sender)
                    beating.cancel_scope.cancel()
            if scope.cancelled_caught:
                return
        finally:
            self._running -= 1
            shard.run_scope = None
            self._release(job.id, index)
            # After the proposal is out: nothing here is on the job's critical path.
            ctx.spawn(_remove_trees, work, inputs)
        if proposal is None:
            return
        ctx.db_soon(
            self._record_call(
                job,
                index,
                ExecutionState.PROPOSED,
                "proposed",
                result_id=shard.result_id,
                exit_code=proposal.exit_code,
            )
        )
        shard.proposal = proposal
        await self._deliver(job, proposal)

    async def _heartbeat(self, job: Job, index: int) -> None:
        """Tell the requester every :data:`~node.messages.HEARTBEAT_INTERVAL_S` that
        this node still runs ``index`` (until cancelled, when the proposal is ready)."""
        beat = messages.ExecutionHeartbeat(job_id=job.id, shard=index)
        while True:
            await trio.sleep(messages.HEARTBEAT_INTERVAL_S)
            try:
                await self._ctx.transport.send(job.requester, beat)
            except TransportError as exc:
                log.info("heartbeat of job %s shard %d not delivered: %s", job.id, index, exc)

    async def _send_output(self, job: Job, batch: messages.JobOutput) -> bool:
        """Deliver a batch of live output to the job's requester, once (lines are
        worth less than the time a retry would cost); whether it was taken."""
        try:
            ack = await self._ctx.transport.send(job.requester, batch)
        except TransportError as exc:
            log.info("output of job %s shard %d not delivered: %s", job.id, batch.shard, exc)
            return False
        return ack.ok

    async def _execute(
        self,
        job: Job,
        index: int,
        work: Path,
        inputs: Path,
        shard: _KnownShard,
        sender: OutputSender,
    ) -> messages.ResultsProposed | None:
        """Run the shard and make its proposal (the results tree stored, its CID sealed
        to the requester); None, the requester told, if it could not run. What it
        printed is sent before either (``sender``)."""
        executor = self._executors[job.spec.engine]
        labels = {NODE_LABEL: self._ctx.node_id, JOB_LABEL: job.id}
        try:
            mounted = await self._prepare_inputs(job, index, inputs)
            started = trio.current_time()
            try:
                result = await executor.run(
                    job.id,
                    index,
                    job.spec,
                    work,
                    labels=labels,
                    inputs=mounted,
                    output=sender.output,
                )
                run_seconds = trio.current_time() - started
            finally:
                await sender.flush()
            forgery, me = self.forgery, self._ctx.node_id
            if forgery is not None and forgery.forges(me, job.id, index):
                await trio.to_thread.run_sync(forge_results, work, forgery.line(me))
            shard.result_id, preview = await trio.to_thread.run_sync(self._store_results, work)
        except (ExecutorError, InputsUnavailable) as exc:
            self._ctx.db_soon(
                self._record_call(job, index, ExecutionState.ERROR, "error", reason=str(exc))
            )
            error = messages.ComputeError(job_id=job.id, shard=index, message=str(exc))
            await self._deliver(job, error)
            return None
        stored = trio.current_time()
        sealed = seal(job.requester, shard.result_id.encode())
        phases = dict(result.phases_ms)
        phases["results"] = (stored - started - run_seconds) * 1000
        phases["seal"] = (trio.current_time() - stored) * 1000
        return messages.ResultsProposed(
            job_id=job.id,
            shard=index,
            sealed_result=sealed,
            exit_code=result.exit_code,
            stdout_preview=preview,
            run_seconds=run_seconds,
            phases_ms={k: round(v, 2) for k, v in phases.items()},
        )

    def _store_results(self, work: Path) -> tuple[str, str]:
        """Store the results tree at ``work`` (worker thread); its CID and stdout preview."""
        result_id = self._results.put(work)
        preview = (work / "stdout").read_bytes()[:STDOUT_PREVIEW_BYTES]
        return result_id, preview.decode("utf-8", "replace")

    async def _prepare_inputs(self, job: Job, index: int, dest: Path) -> Path | None:
        """Fetch the job's inputs from its requester and write this shard's part of
        them to ``dest``; None for a job without inputs. Raises
        :class:`InputsUnavailable` saying what could not be had."""
        spec = job.spec
        if not spec.inputs:
            return None
        exchange = self.exchange
        if exchange is None:
            raise InputsUnavailable("this node's block exchange is not running yet")
        providers = [job.requester] if job.requester != self._ctx.node_id else []
        try:
            mounts = mounts_of(spec)
            for _, cid in mounts:
                await exchange.fetch(cid, providers, timeout=INPUT_FETCH_TIMEOUT_S)
            plan = await shard_plan(spec, exchange, mounts)
            selected = None
            if plan is not None:
                if index >= len(plan):
                    raise InputError(f"the inputs make {len(plan)} shards, not {index + 1}")
                selected = plan[index]
            await exchange.in_thread(write_inputs, mounts, exchange.store.get, dest, selected)
        except (FetchError, BlockNotFound, ContentError, InputError, SpecError, OSError) as exc:
            raise InputsUnavailable(f"inputs: {exc}") from exc
        return dest

    async def _publish(self, known: _KnownJob, shard: _KnownShard) -> None:
        job, index = known.job, shard.index
        if shard.result_id is None:
            return
        started = trio.current_time()
        try:
            published = await self._publishers[job.spec.publisher].publish(shard.result_id)
        except PublishError as exc:
            await self._record(job, index, ExecutionState.ERROR, "error", reason=str(exc))
            error = messages.ComputeError(job_id=job.id, shard=index, message=str(exc))
            await self._deliver(job, error)
            return
        took_ms = (trio.current_time() - started) * 1000
        self._ctx.db_soon(
            self._record_call(
                job,
                index,
                ExecutionState.PUBLISHED,
                "published",
                result_id=published.result_id,
                result_url=published.location,
            )
        )
        await self._deliver(
            job,
            messages.ResultsPublished(
                job_id=job.id,
                shard=index,
                result_id=published.result_id,
                location=published.location,
                publish_ms=round(took_ms, 2),
            ),
        )

    async def _deliver(self, job: Job, message: Message) -> bool:
        """Send ``message`` to the job's requester, retrying one that cannot be reached
        (it may be restarting) for as long as a job's results may take; whether it
        was accepted."""
        retry_for = job.spec.timeout + RESULTS_GRACE_S
        return await self._ctx.send(job.requester, message, retry_for=retry_for)

    def _status(self, known: _KnownJob | None, index: int) -> messages.StatusReport:
        """Where this node's run of ``index`` stands, for a restarted requester."""
        shard = known.shards.get(index) if known is not None else None
        state: messages.RunState = "unknown"
        if shard is not None and shard.accepted:
            if shard.run_scope is not None:
                state = "running"
            elif shard.result_id is not None:
                state = "proposed"
                if shard.proposal is not None and known is not None:
                    # At once, not at the delivery loop's next try: the requester waits.
                    self._ctx.spawn(self._deliver, known.job, shard.proposal)
        job_id = known.job.id if known is not None else ""
        return messages.StatusReport(job_id=job_id, shard=index, state=state)

    async def _record(
        self,
        job: Job,
        shard: int | None,
        state: ExecutionState | None,
        kind: str,
        **fields: object,
    ) -> None:
        """Record this node's step on ``shard``; on a job it did not request, move the
        job's state too."""
        await self._ctx.db(self._record_call(job, shard, state, kind, **fields))

    def _record_call(
        self,
        job: Job,
        shard: int | None,
        state: ExecutionState | None,
        kind: str,
        **fields: object,
    ) -> Callable[[], None]:
        """The store call :meth:`_record` makes, ready to run."""
        ctx = self._ctx
        event = ctx.event(job.id, kind, shard=shard, role="compute", **fields)
        execution = None
        if state is not None and shard is not None:
            execution = Execution(
                job_id=job.id,
                shard=shard,
                node=ctx.node_id,
                state=state,
                updated_at=event.at,
                **fields,
            )
        job_state = _COMPUTE_JOB_STATE.get(kind) if job.requester != ctx.node_id else None
        return partial(ctx.store.record, event, state=job_state, execution=execution)


async def _remove_trees(*paths: Path) -> None:
    for path in paths:
        await trio.to_thread.run_sync(shutil.rmtree, path, True)


class InputsUnavailable(Exception):
    """A shard's inputs could not be fetched or written; the message says why."""


_RESTARTED = "the node restarted while it held the run"
# What a node killed outright cannot pick up again: the requester runs it elsewhere.
_LOST_ON_RESTART = (ExecutionState.ACCEPTED, ExecutionState.RUNNING)

# How a compute-only node's view of a job follows its own execution.
_COMPUTE_JOB_STATE: dict[str, JobState] = {
    "bid_refused": JobState.CANCELLED,
    "bid_rejected": JobState.CANCELLED,
    "running": JobState.RUNNING,
    "proposed": JobState.VERIFYING,
    "published": JobState.COMPLETED,
    "error": JobState.ERROR,
    "cancelled": JobState.CANCELLED,
    "lost": JobState.ERROR,
}
