"""``devstack simulate``: a discrete-event simulation of bidding, driving the real bidders.

It answers "how many bids does a job draw, how long until it has ``c``, and how
evenly does the work spread" for networks too big to start, with the very bidder
the nodes run: every delay comes from ``node.bidder`` (``make_bidder(name,
step=...).delays(job, 0, members)``, the call a node takes its own delay from),
not from a copy of it.

The model
---------
- **Identities.** ``N`` nodes with peer-id-like ids (``12D3KooW`` + 44 base58
  characters) and ``J`` jobs with uuid4 ids, all drawn from ``--seed``; a run is
  fully deterministic for a given seed and set of options.
- **Jobs.** Poisson arrivals at ``--rate`` jobs/s, each at a uniformly random
  requester node, as ``Job(spec=JobSpec(engine="noop", deal=Deal(concurrency=c)))``.
  An accepted execution runs ``--run-ms`` (fixed, or exponential with that mean
  under ``--run-dist exp``).
- **Capacity.** Every node has ``--slots`` slots (a node is also a compute node for
  its own jobs). A bid holds a slot from the moment it is sent until the answer
  arrives; an accepted bid holds it on through the run; a node with no free slot
  when its delay ends does not bid (``node/compute.py``).
- **Gossip.** Every (gossip message, receiver) pair gets its own latency, drawn
  from a lognormal with median ``--latency`` ms and shape ``--latency-sigma``
  (sampled from 4096 equally likely quantiles, so it is bounded at about
  ``median * e^(3.7 sigma)``); the requester hears its own messages at once.
  ``JobAnnounced`` reaches node ``i`` at ``t0 + L_i``; ``BiddingClosed``, published
  when the requester has accepted ``c`` bids, at ``t_close + L'_i``.
- **Direct messages** (bid to requester, accept/reject back) take ``--direct-ms``
  each, whoever the peers are; so bids reach the requester in the order they
  were sent.
- **Bidding.** A node that hears an announce at ``t`` asks the bidder for its delay
  (``None``: it never bids on the job). At ``t + delay`` it bids unless it has
  heard ``BiddingClosed``, has already bid on the job, or has no free slot. Every
  node's view of the live members is the whole network (as on a settled
  devstack), so one ``delays`` call per job gives every node's delay.
- **Requester.** It accepts the first ``c`` bids to arrive and rejects every later
  one (a rejected bidder frees its slot when the rejection arrives), then
  publishes ``BiddingClosed``.
- **Rebid.** If it has fewer than ``c`` accepted bids ``--window`` s after
  announcing, it announces again (round 2, 3, ... up to ``--max-rounds``), each
  window twice the one before, keeping the bids it accepted. As the nodes do
  (``node/compute.py``): a node that has bid does not bid again, a node still
  waiting out its delay ignores the new round, and in round ``r`` (counting from
  1) a node waits the bidder's delay divided by ``--rebid-shrink ** (r - 1)``.
  A job still short after its last window is *never completed*: the requester
  gives up (later bids are rejected) and cancels the executions it accepted.

Figures (times from the job's submission, as the requester sees them): bids per
job (every bid over all rounds); jobs short of ``c`` bids when round 1's window
ended; jobs with no bid at all; jobs never completed; time to the first bid and
to the ``c``-th accepted bid; load balance (executions of completed jobs per
node, max over mean).

Speed: one heap of events, but a job's bids are not each an event: a round's
bids form one cursor (a heap of (time, node), sorted outright once it has been
read deep), and a run of them that comes before anything else in the heap is
handled in one go. Replies, runs and releases need no events at all: with one
direct latency a bid's fate is known when it is sent (the first ``c`` sent are
the first ``c`` to arrive), so the slot it holds is just an end time. A round's
window end is handled ``--direct-ms`` early, so every bid handled after it
arrives after the window. When the ``c``-th bid is accepted, which of the
round's remaining nodes end their delay before ``BiddingClosed`` reaches them is
settled at once (each with the latency it would draw anyway) and the others are
dropped. ``bacalhau-2022`` hashes both ids
with pure-Python FNV-1a on every call; the run memoizes the bidder module's pure
hash helpers (:func:`memoized_bidder_hashes`), which changes no result. The
bidder's delays for a job do not depend on anything that happens, so for a big
run a forked worker process computes them ahead while this one simulates
(``--workers``; the figures are the same with any number). ``wall_s`` is the
run's wall time, ``cpu_s`` this process's CPU time (a worker's not included).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import node.bidder as bidder_module
from node.argtypes import positive
from node.bidder import BIDDERS, DEFAULT_BIDDER, DEFAULT_STEP_S, make_bidder
from node.models import Deal, Job, JobSpec
from profiles.quantiles import percentile

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
LATENCY_QUANTILES = 4096
RUN_DISTS = ("fixed", "exp")

# Event kinds, in the order they are handled when times tie.
_DEADLINE, _ARRIVE, _BIDS = 0, 1, 2
# Bids taken from a round's heap before the rest of it is sorted instead.
_HEAP_POPS = 48


@dataclass(frozen=True)
class SimConfig:
    """Everything a run depends on; times in the units their names say."""

    nodes: int
    jobs: int
    concurrency: int = 1
    bidder: str = DEFAULT_BIDDER
    step: float = DEFAULT_STEP_S
    latency_ms: float = 70.0
    latency_sigma: float = 0.5
    direct_ms: float = 5.0
    rate: float = 20.0
    run_ms: float = 500.0
    run_dist: str = "fixed"
    slots: int = 2
    window: float = 5.0
    max_rounds: int = 3
    rebid_shrink: float = 2.0
    seed: int = 0
    # Processes that compute the bidder's delays while this one simulates (they do
    # not change a figure); None: one for a big run on a machine with cores to spare.
    workers: int | None = None

    def check(self) -> None:
        """Raise ValueError naming the first option that makes no sense."""
        if self.nodes < 1 or self.jobs < 1 or self.slots < 1 or self.max_rounds < 1:
            raise ValueError("nodes, jobs, slots and max_rounds must be at least 1")
        if not 1 <= self.concurrency <= self.nodes:
            raise ValueError(
                f"concurrency must be between 1 and the {self.nodes} nodes, got {self.concurrency}"
            )
        if self.bidder not in BIDDERS:
            raise ValueError(f"unknown bidder {self.bidder!r}; known: {', '.join(BIDDERS)}")
        if self.run_dist not in RUN_DISTS:
            raise ValueError(f"run_dist must be one of {', '.join(RUN_DISTS)}")
        if min(self.rate, self.window, self.latency_ms) <= 0 or self.rebid_shrink <= 0:
            raise ValueError("rate, window, latency and rebid_shrink must be above 0")
        if min(self.step, self.latency_sigma, self.direct_ms, self.run_ms) < 0:
            raise ValueError("step, latency_sigma, direct_ms and run_ms must not be negative")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must not be negative, got {self.workers}")


# -- identities and distributions -------------------------------------------------


def peer_ids(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct peer-id-like strings: ``12D3KooW`` and 44 base58 characters."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        candidate = "12D3KooW" + "".join(rng.choices(BASE58, k=44))
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def job_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def latency_table(median_s: float, sigma: float, size: int = LATENCY_QUANTILES) -> list[float]:
    """``size`` equally likely quantiles of a lognormal with this median, ascending."""
    normal = statistics.NormalDist()
    mu = math.log(median_s)
    return [math.exp(mu + sigma * normal.inv_cdf((k + 0.5) / size)) for k in range(size)]


@contextlib.contextmanager
def memoized_bidder_hashes() -> Iterator[None]:
    """Memoize ``node.bidder``'s pure helpers (FNV-1a, float32 rounding) for a while.

    They are pure functions of their arguments, so only the speed changes: the
    bacalhau-2022 bidder re-hashes both ids on every call, ~13 us in pure Python.
    The originals are put back on the way out.
    """
    saved = {}
    for name in ("fnv1a_32", "_f32"):
        original = getattr(bidder_module, name, None)
        if callable(original):
            saved[name] = original
            setattr(bidder_module, name, functools.lru_cache(maxsize=1 << 17)(original))
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(bidder_module, name, original)


# -- the bidder's delays, here or in a forked process --------------------------------

_PARALLEL_FROM = 2_000_000  # node-job pairs from which a worker pays off
_CHUNK = 64  # jobs per worker task
_WORK: tuple[Any, list[str], list[Job]] | None = None  # what a forked worker reads


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _worker_rows(bounds: tuple[int, int]) -> bytes:
    """In a worker: the delays of jobs ``bounds``, as doubles (NaN for None)."""
    assert _WORK is not None
    delays, ids, jobs = _WORK
    out = array("d")
    for job in jobs[bounds[0] : bounds[1]]:
        out.extend(math.nan if d is None else d for d in delays(job, 0, ids))
    return out.tobytes()


@contextlib.contextmanager
def _delay_rows(
    delays: Any, ids: list[str], jobs: list[Job], workers: int
) -> Iterator[Iterator[list[float | None]]]:
    """Every node's delay for each job in turn: computed on demand here, or ahead by
    ``workers`` forked processes (the bidder is a pure function, so either way the
    numbers are the same). The workers end when the block does."""
    if workers == 0:
        yield (delays(job, 0, ids) for job in jobs)
        return
    global _WORK
    _WORK = (delays, ids, jobs)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            chunks = [(k, min(k + _CHUNK, len(jobs))) for k in range(0, len(jobs), _CHUNK)]

            def rows() -> Iterator[list[float | None]]:
                n = len(ids)
                for blob in pool.imap(_worker_rows, chunks):
                    doubles = array("d")
                    doubles.frombytes(blob)
                    for k in range(0, len(doubles), n):
                        yield [None if d != d else d for d in doubles[k : k + n]]

            yield rows()
    finally:
        _WORK = None


# -- the simulation ----------------------------------------------------------------


class _Job:
    __slots__ = (
        "accepted",
        "bid",
        "bids",
        "delays",
        "fire",
        "first_bid",
        "gave_up",
        "index",
        "job",
        "lat",
        "requester",
        "runners",
        "t0",
        "t_close",
    )

    def __init__(self, index: int, job: Job, requester: int, t0: float) -> None:
        self.index = index
        self.job = job
        self.requester = requester
        self.t0 = t0
        self.bids = 0
        self.accepted = 0
        self.first_bid: float | None = None
        self.t_close: float | None = None
        self.gave_up = False
        self.runners: list[tuple[int, float]] = []
        # Each node's delay and (round 1) gossip latency, kept until bidding ends;
        # whether it bid; when its latest delay ends (set only if a round 2 comes,
        # to know whether the node is still waiting when a round starts).
        self.delays: list[float | None] | None = None
        self.bid: bytearray | None = None
        self.fire: list[float] | None = None
        self.lat: list[float] | None = None


def simulate(config: SimConfig) -> dict[str, Any]:
    """Run the simulation ``config`` describes; the figures as one flat dict."""
    config.check()
    started, cpu = time.perf_counter(), time.process_time()
    with memoized_bidder_hashes():
        result = _simulate(config)
    result["wall_s"] = round(time.perf_counter() - started, 3)
    result["cpu_s"] = round(time.process_time() - cpu, 3)
    return result


def _simulate(config: SimConfig) -> dict[str, Any]:
    n = config.nodes
    delays = make_bidder(config.bidder, step=config.step).delays
    workers = config.workers
    if workers is None:
        big = n * config.jobs >= _PARALLEL_FROM
        workers = 1 if big and (os.cpu_count() or 1) > 1 and _can_fork() else 0

    seed = config.seed
    id_rng = random.Random(f"{seed}:ids")
    arrival_rng = random.Random(f"{seed}:arrivals")
    lat_rng = random.Random(f"{seed}:latency")
    run_rng = random.Random(f"{seed}:runs")

    ids = peer_ids(n, id_rng)
    spec = JobSpec(engine="noop", deal=Deal(concurrency=config.concurrency))
    # Arrivals, requesters and ids do not depend on what happens, so they are drawn
    # up front (in the order a job-by-job draw would take them).
    plan: list[tuple[float, int, Job]] = []
    t = arrival_rng.expovariate(config.rate)
    for index in range(config.jobs):
        requester = arrival_rng.randrange(n)
        job = Job(id=job_id(id_rng), requester=ids[requester], spec=spec, created_at=t)
        plan.append((t, requester, job))
        if index + 1 < config.jobs:
            t += arrival_rng.expovariate(config.rate)
    with _delay_rows(delays, ids, [job for _, _, job in plan], workers) as rows:
        return _run(config, plan, rows, lat_rng, run_rng)


def _run(
    config: SimConfig,
    plan: list[tuple[float, int, Job]],
    rows: Iterator[list[float | None]],
    lat_rng: random.Random,
    run_rng: random.Random,
) -> dict[str, Any]:
    n, c, slots = config.nodes, config.concurrency, config.slots
    direct = config.direct_ms / 1000.0
    run_s = config.run_ms / 1000.0
    exp_runs = config.run_dist == "exp" and run_s > 0
    table = latency_table(config.latency_ms / 1000.0, config.latency_sigma)
    lat_max = table[-1]
    quantiles = len(table)
    choices, uniform = lat_rng.choices, lat_rng.random
    heappop = heapq.heappop

    held: list[list[float]] = [[] for _ in range(n)]  # per node: when each held slot frees
    runs = [0] * n
    jobs: list[_Job] = []
    heap: list[tuple[float, int, int, int, Any]] = []  # (time, kind, node, seq, what)
    seq = 0
    busy_skips = stood_down = 0
    short_first = never_completed = rebid_jobs = 0

    def announce(sim_job: _Job, t: float, round_: int) -> list[tuple[float, int]]:
        """A heap of (bid time, node) of every node that will try to bid in this round."""
        lat = choices(table, k=n)
        lat[sim_job.requester] = 0.0
        delays = sim_job.delays
        assert delays is not None
        if round_ == 1:
            sim_job.lat = lat  # when each delay ends is worked out only if a round 2 comes
            entries = [
                (t + late + delay, i)
                for i, (late, delay) in enumerate(zip(lat, delays, strict=True))
                if delay is not None
            ]
        else:
            fire, bid = sim_job.fire, sim_job.bid
            if fire is None:
                assert sim_job.lat is not None
                t0 = sim_job.t0
                fire = sim_job.fire = [
                    0.0 if delay is None else t0 + late + delay
                    for late, delay in zip(sim_job.lat, delays, strict=True)
                ]
                sim_job.lat = None
            shrink = config.rebid_shrink ** (round_ - 1)
            entries = []
            for i, delay in enumerate(delays):
                if delay is None or bid[i]:
                    continue
                heard = t + lat[i]
                if fire[i] > heard:
                    continue  # still waiting out its delay from an earlier round
                at = heard + delay / shrink
                fire[i] = at
                entries.append((at, i))
        heapq.heapify(entries)
        return entries

    def settle(
        rest: list[tuple[float, int]], t_close: float, requester: int
    ) -> list[tuple[float, int]]:
        """Of a round's remaining (bid time, node), sorted, those that end their delay
        before BiddingClosed reaches them; settled at once, since the others have
        nothing left to do (each node's draw is the one it would make on the spot)."""
        limit = t_close + lat_max
        kept = []
        for entry in rest:
            at = entry[0]
            if at < limit and at < t_close + (
                0.0 if entry[1] == requester else table[int(uniform() * quantiles)]
            ):
                kept.append(entry)
        kept.sort()
        return kept

    def push(t: float, kind: int, payload: Any, node: int = -1) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, kind, node, seq, payload))

    push(plan[0][0], _ARRIVE, 0)

    item = heappop(heap)
    while True:
        t, kind, _, _, payload = item

        if kind == _BIDS:
            # A run of one round's bids, up to the next other event.
            entries, idx, popped, sim_job, settled = payload
            bid = sim_job.bid
            assert bid is not None
            requester = sim_job.requester
            t_close = sim_job.t_close
            yielded = False
            while True:
                # A round starts as a heap (most of a banded round is never reached);
                # one that is read deep is sorted once and read in order.
                if popped < _HEAP_POPS:
                    tb, i = heappop(entries)
                    popped += 1
                    if popped == _HEAP_POPS:
                        entries.sort()
                else:
                    tb, i = entries[idx]
                    idx += 1
                if bid[i]:
                    pass  # this node has bid already (in an earlier round)
                elif (
                    t_close is not None
                    and not settled
                    and tb
                    >= t_close + (0.0 if i == requester else table[int(uniform() * quantiles)])
                ):
                    stood_down += 1
                else:
                    slots_of = held[i]
                    if len(slots_of) >= slots:
                        slots_of[:] = [e for e in slots_of if e > tb]
                    if len(slots_of) >= slots:
                        busy_skips += 1
                    else:
                        bid[i] = 1
                        sim_job.bids += 1
                        arrives = tb + direct
                        if sim_job.first_bid is None:
                            sim_job.first_bid = arrives
                        if t_close is None and not sim_job.gave_up:
                            run = run_rng.expovariate(1 / run_s) if exp_runs else run_s
                            run_end = arrives + direct + run
                            slots_of.append(run_end)
                            sim_job.runners.append((i, run_end))
                            runs[i] += 1
                            sim_job.accepted += 1
                            if sim_job.accepted == c:
                                sim_job.t_close = t_close = arrives
                                sim_job.delays = sim_job.fire = sim_job.lat = None
                                rest = entries if popped < _HEAP_POPS else entries[idx:]
                                entries = settle(rest, t_close, requester)
                                stood_down += len(rest) - len(entries)
                                idx, popped, settled = 0, _HEAP_POPS, True
                                payload[0] = entries
                        else:
                            slots_of.append(arrives + direct)
                if idx == len(entries):
                    break
                next_t = entries[idx][0]
                if t_close is not None and next_t >= t_close + lat_max:
                    # BiddingClosed reached every one of them first.
                    stood_down += len(entries) - idx
                    break
                # Ties (equal times, as with --latency-sigma 0) go in node order.
                if heap and (
                    heap[0][0] < next_t
                    or (heap[0][0] == next_t and heap[0][1:3] < (_BIDS, entries[idx][1]))
                ):
                    payload[1], payload[2], payload[4] = idx, popped, settled
                    seq += 1
                    # Pops the earlier event (now ``item``) before pushing this cursor.
                    next_item = (next_t, _BIDS, entries[idx][1], seq, payload)
                    item = heapq.heapreplace(heap, next_item)
                    yielded = True
                    break
            if yielded:
                continue

        elif kind == _ARRIVE:
            index = payload
            _, requester, job = plan[index]
            sim_job = _Job(index, job, requester, t)
            jobs.append(sim_job)
            sim_job.delays = next(rows)
            sim_job.bid = bytearray(n)
            entries = announce(sim_job, t, 1)
            if entries:
                push(entries[0][0], _BIDS, [entries, 0, 0, sim_job, False], entries[0][1])
            push(t + config.window - direct, _DEADLINE, (sim_job, 1, t + config.window))
            if index + 1 < config.jobs:
                push(plan[index + 1][0], _ARRIVE, index + 1)

        elif kind == _DEADLINE:
            # Keyed ``direct`` before the window ends: every bid handled after this
            # one arrives after the window.
            sim_job, round_, end = payload
            if sim_job.accepted >= c:
                pass
            elif round_ < config.max_rounds:
                if round_ == 1:
                    short_first += 1
                    rebid_jobs += 1
                entries = announce(sim_job, end, round_ + 1)
                if entries:
                    push(entries[0][0], _BIDS, [entries, 0, 0, sim_job, False], entries[0][1])
                window = config.window * 2**round_
                push(end + window - direct, _DEADLINE, (sim_job, round_ + 1, end + window))
            else:
                if round_ == 1:
                    short_first += 1
                sim_job.gave_up = True
                never_completed += 1
                cancel_at = end + direct
                for i, run_end in sim_job.runners:
                    runs[i] -= 1
                    if run_end > cancel_at:
                        slots_of = held[i]
                        with contextlib.suppress(ValueError):
                            slots_of[slots_of.index(run_end)] = cancel_at
                sim_job.delays = sim_job.fire = sim_job.lat = None

        if not heap:
            break
        item = heappop(heap)

    return _figures(
        config, jobs, runs, busy_skips, stood_down, short_first, never_completed, rebid_jobs
    )


def _figures(
    config: SimConfig,
    jobs: list[_Job],
    runs: list[int],
    busy_skips: int,
    stood_down: int,
    short_first: int,
    never_completed: int,
    rebid_jobs: int,
) -> dict[str, Any]:
    bids = [j.bids for j in jobs]
    first = [(j.first_bid - j.t0) * 1000 for j in jobs if j.first_bid is not None]
    accepted = [(j.t_close - j.t0) * 1000 for j in jobs if j.t_close is not None]
    load_mean = sum(runs) / len(runs)
    end = max((j.t0 for j in jobs), default=0.0)
    return {
        "bidder": config.bidder,
        "nodes": config.nodes,
        "jobs": config.jobs,
        "concurrency": config.concurrency,
        "seed": config.seed,
        "bids_per_job_mean": round(statistics.fmean(bids), 3),
        "bids_per_job_p50": round(percentile(bids, 50, empty=0.0), 3),
        "bids_per_job_p99": round(percentile(bids, 99, empty=0.0), 3),
        "bids_per_job_max": max(bids),
        "bids_total": sum(bids),
        "jobs_short_of_bids_first_round": short_first,
        "jobs_rebid": rebid_jobs,
        "jobs_without_bids": sum(1 for b in bids if b == 0),
        "jobs_never_completed": never_completed,
        "first_bid_p50_ms": round(percentile(first, 50, empty=0.0), 1),
        "first_bid_p99_ms": round(percentile(first, 99, empty=0.0), 1),
        "accepted_p50_ms": round(percentile(accepted, 50, empty=0.0), 1),
        "accepted_p99_ms": round(percentile(accepted, 99, empty=0.0), 1),
        "accepted_max_ms": round(max(accepted, default=0.0), 1),
        "load_max": max(runs),
        "load_mean": round(load_mean, 3),
        "load_max_over_mean": round(max(runs) / load_mean, 3) if load_mean else 0.0,
        "skipped_busy": busy_skips,
        "stood_down": stood_down,
        "simulated_s": round(end, 1),
        "params": asdict(config),
    }


# -- the command -------------------------------------------------------------------


def format_text(result: dict[str, Any]) -> str:
    """The figures as a small aligned table."""
    p = result["params"]
    rows = [
        ("bidder", f"{result['bidder']} (step {p['step']:g}s)"),
        ("nodes / jobs / c", f"{result['nodes']} / {result['jobs']} / {result['concurrency']}"),
        (
            "load",
            f"{p['rate']:g} jobs/s, {p['slots']} slots/node, run {p['run_ms']:g}ms {p['run_dist']}",
        ),
        (
            "latency",
            f"gossip median {p['latency_ms']:g}ms (sigma {p['latency_sigma']:g}),"
            f" direct {p['direct_ms']:g}ms",
        ),
        (
            "bids per job",
            f"mean {result['bids_per_job_mean']:g}  p50 {result['bids_per_job_p50']:g}"
            f"  p99 {result['bids_per_job_p99']:g}  max {result['bids_per_job_max']}",
        ),
        (
            "jobs short of c bids",
            f"{result['jobs_short_of_bids_first_round']} after round 1"
            f" ({p['window']:g}s window, up to {p['max_rounds']} rounds)",
        ),
        ("jobs with no bid", str(result["jobs_without_bids"])),
        ("jobs never completed", str(result["jobs_never_completed"])),
        (
            "first bid",
            f"p50 {result['first_bid_p50_ms']:g}ms  p99 {result['first_bid_p99_ms']:g}ms",
        ),
        (
            "c bids accepted",
            f"p50 {result['accepted_p50_ms']:g}ms  p99 {result['accepted_p99_ms']:g}ms"
            f"  max {result['accepted_max_ms']:g}ms",
        ),
        (
            "jobs per node",
            f"max {result['load_max']}  mean {result['load_mean']:g}"
            f"  max/mean {result['load_max_over_mean']:g}",
        ),
        (
            "bids not sent",
            f"{result['skipped_busy']} node full, {result['stood_down']} BiddingClosed heard first",
        ),
        (
            "simulated / wall / cpu",
            f"{result['simulated_s']:g}s / {result['wall_s']:g}s / {result['cpu_s']:g}s",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def add_simulate_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=positive(int), default=200, help="network size N (default 200)")
    p.add_argument("--jobs", type=positive(int), default=2000, help="jobs J (default 2000)")
    p.add_argument("--concurrency", type=positive(int), default=1, help="c (default 1)")
    p.add_argument("--bidder", choices=sorted(BIDDERS), default=DEFAULT_BIDDER)
    p.add_argument(
        "--step",
        type=positive(float, zero=True),
        default=DEFAULT_STEP_S,
        help=f"seconds between hash-space bands (default {DEFAULT_STEP_S:g})",
    )
    p.add_argument(
        "--latency", type=positive(float), default=70.0, help="median gossip latency, ms (70)"
    )
    p.add_argument(
        "--latency-sigma", type=positive(float, zero=True), default=0.5, help="lognormal shape"
    )
    p.add_argument(
        "--direct-ms", type=positive(float, zero=True), default=5.0, help="direct message, ms (5)"
    )
    p.add_argument("--rate", type=positive(float), default=20.0, help="jobs per second (20)")
    p.add_argument("--run-ms", type=positive(float, zero=True), default=500.0, help="run (500)")
    p.add_argument("--run-dist", choices=RUN_DISTS, default="fixed")
    p.add_argument("--slots", type=positive(int), default=2, help="slots per node (2)")
    p.add_argument("--window", type=positive(float), default=5.0, help="first bid window, s (5)")
    p.add_argument("--max-rounds", type=positive(int), default=3, help="bid rounds (3)")
    p.add_argument(
        "--rebid-shrink",
        type=positive(float),
        default=2.0,
        help="round r waits delay / SHRINK**(r-1) (default 2, as the nodes; 1 = no change)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workers",
        type=positive(int, zero=True),
        default=None,
        help="processes computing the bidder's delays alongside (default: 1 for a big run"
        " on a multi-core machine, else 0); no figure depends on it",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        nodes=args.nodes,
        jobs=args.jobs,
        concurrency=args.concurrency,
        bidder=args.bidder,
        step=args.step,
        latency_ms=args.latency,
        latency_sigma=args.latency_sigma,
        direct_ms=args.direct_ms,
        rate=args.rate,
        run_ms=args.run_ms,
        run_dist=args.run_dist,
        slots=args.slots,
        window=args.window,
        max_rounds=args.max_rounds,
        rebid_shrink=args.rebid_shrink,
        seed=args.seed,
        workers=args.workers,
    )


def run(args: argparse.Namespace) -> int:
    """``devstack simulate``: print the figures; 2 for options that make no sense."""
    config = config_from_args(args)
    try:
        config.check()
    except ValueError as exc:
        print(f"devstack simulate: {exc}", file=sys.stderr)
        return 2
    result = simulate(config)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_text(result))
    return 0
