"""``devstack bench chaos``: jobs through a devstack whose nodes are killed under them.

Submits ``--jobs`` jobs at ``--rate`` per second, round robin over the nodes' APIs,
while a chaos thread SIGKILLs a node every ``--kill-every`` seconds and restarts it
on its data dir ``--pause`` seconds later (with the cluster's options, as
``devstack restart`` does); every third kill is of the requester of a job the bench
has just had accepted, the others of a random node. A submission that finds its
node down goes to the next one (it is not a job yet). Before the chaos, one job of
each distinct spec runs on the quiet cluster: its published CIDs are the reference
each job of that spec must match. After the last submission the bench waits, up to
``--settle`` seconds, for every job to end, reading each from its requester.

Reported: jobs completed, error, cancelled and still open; the top error reasons;
the requesters' ``retry`` events (how many, ``detected_after_s``, and from the retry
to the job completed); the kills and the restarts that did not come back ready;
completed jobs whose results differ from the reference (must be 0); and the
containers this cluster's nodes left, at the end and after ``devstack down``.

This module owns the chaos bench alone: its job specs, the kill-and-restart thread,
the retrying submitter and the tally of outcomes (small pure functions, unit-tested).
The cluster, the figures' printing and the end-of-job wait come from
:mod:`devstack.bench.harness`, :mod:`devstack.cluster` and :mod:`devstack.jobs`; its
defaults that the command line shows, from :mod:`devstack.bench.options`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from devstack import state as st
from devstack.bench.harness import BenchCluster, BenchError, bench_cluster, report, say
from devstack.bench.options import CHAOS_IMAGE as IMAGE
from devstack.bench.options import CHAOS_JOB_TIMEOUT_S as JOB_TIMEOUT_S
from devstack.bench.options import CHAOS_SETTLE_S as SETTLE_S
from devstack.client import NodeApiError, NodeClient
from devstack.cluster import ClusterError, node_containers, restart_node
from devstack.jobs import TERMINAL
from devstack.jobs import wait as wait_for_job
from devstack.state import NodeEntry
from node.models import JobSpec
from profiles.quantiles import percentile

#: Distinct specs; job ``i`` runs spec ``i % SPECS``, so one reference run per spec
#: covers every job.
SPECS = 10
#: A restarted node must answer healthy and be in the gossip mesh within this.
READY_TIMEOUT_S = 60.0
#: A SIGKILLed process is gone at once; this only bounds a wait that cannot end.
GONE_TIMEOUT_S = 10.0
#: A submission no node takes for this long is given up (every node down that long).
SUBMIT_GIVE_UP_S = 60.0
#: Submissions in flight at once: a slow answer does not hold the schedule back.
SUBMITTERS = 16
READERS = 16
REQUESTER_KILL_EVERY = 3
REASONS_SHOWN = 5
#: Containers a run queues for removal go within moments of its job's end.
LEFTOVER_WAIT_S = 15.0


# -- pure parts: specs, order, victims, figures -------------------------------------


def job_spec(engine: str, index: int, image: str = IMAGE) -> JobSpec:
    """The spec of job ``index``: the same for every index of one ``index % SPECS``,
    and its result the same on every run (so a reference run says what it must be)."""
    k = index % SPECS
    limits = {"timeout": JOB_TIMEOUT_S, "queue_timeout": JOB_TIMEOUT_S}
    if engine == "docker":
        command = ["sh", "-c", f"echo chaos-{k}; sleep 1"]
        return JobSpec(engine="docker", image=image, command=command, **limits)
    return JobSpec(engine="noop", command=["echo", f"chaos-{k}"], **limits)


def submit_order(index: int, nodes: int) -> list[int]:
    """The nodes job ``index`` is offered to, in turn: round robin first, then each
    other node once (a node that is down is skipped by trying the next)."""
    return [(index + k) % nodes for k in range(nodes)]


def retryable(exc: NodeApiError) -> bool:
    """Whether a refused submission may go to another node: the node could not be
    reached (killed, restarting) or failed, as opposed to refusing the spec (4xx)."""
    return exc.status is None or exc.status >= 500


def is_requester_kill(number: int) -> bool:
    """Kill ``number`` (from 1) is aimed at a requester of an open job: every third."""
    return number % REQUESTER_KILL_EVERY == 0


def choose_victim(
    number: int, alive: Sequence[int], requester: int | None, rng: random.Random
) -> tuple[int, bool]:
    """The node kill ``number`` ends, and whether it is a requester kill: ``requester``
    (the node an open job was just submitted to) on every third kill if it is alive,
    otherwise a random live node."""
    if not alive:
        raise ValueError("no live node to kill")
    if is_requester_kill(number) and requester is not None and requester in alive:
        return requester, True
    return rng.choice(list(alive)), False


def p50_p95(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """``n``, ``p50`` and ``p95`` of ``values`` (None for no values)."""
    return {
        "n": len(values),
        **{
            name: round(percentile(values, q), digits) if values else None
            for name, q in (("p50", 50), ("p95", 95))
        },
    }


def shard_cids(answer: Mapping[str, Any]) -> list[str | None]:
    """The published CID of each shard of a described job, in shard order."""
    return [s["cid"] for s in answer.get("shards", [])]


def job_events(answer: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The job's own ``kind`` events, oldest first: those of a compute step the
    requester ran itself carry a ``role`` and are not the job's."""
    found = [e for e in answer.get("events", []) if e["kind"] == kind]
    return sorted((e for e in found if not e["detail"].get("role")), key=lambda e: e["at"])


def ended_at(answer: Mapping[str, Any]) -> float | None:
    """When the job ended by its requester's clock; None while it is open."""
    record = answer["job"]
    if record["state"] not in TERMINAL:
        return None
    completed = job_events(answer, "completed")
    return completed[0]["at"] if completed else record["updated_at"]


def open_at(answer: Mapping[str, Any] | None, at: float) -> bool | None:
    """Whether the job was still open at wall time ``at`` (None: it is unknown)."""
    if answer is None:
        return None
    end = ended_at(answer)
    return end is None or end > at


@dataclass(frozen=True)
class Outcome:
    """One accepted job as read at the end: its spec and its requester's describe
    (None if the requester could not be asked)."""

    spec: int
    answer: Mapping[str, Any] | None


def tally(
    outcomes: Sequence[Outcome], reference: Mapping[int, Sequence[str | None]]
) -> dict[str, Any]:
    """The figures of the jobs' outcomes: by state (``open`` takes every job not ended,
    or not readable), the top reasons of the jobs that did not complete, the ``retry``
    events (and their ``detected_after_s``), the time from each job's first retry to
    its completion (s), and the completed jobs whose published CIDs differ from their
    spec's ``reference``."""
    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    retries = 0
    detection: list[float] = []
    recovery: list[float] = []
    differ: list[str] = []
    unreadable = 0
    for outcome in outcomes:
        answer = outcome.answer
        if answer is None:
            states["open"] += 1
            unreadable += 1
            continue
        record = answer["job"]
        state = record["state"] if record["state"] in TERMINAL else "open"
        states[state] += 1
        if state in ("error", "cancelled"):
            reasons[f"{state}: {record.get('reason') or '-'}"] += 1
        retried = job_events(answer, "retry")
        retries += len(retried)
        detection += [
            float(e["detail"]["detected_after_s"])
            for e in retried
            if isinstance(e["detail"].get("detected_after_s"), int | float)
        ]
        if state != "completed":
            continue
        end = ended_at(answer)
        if retried and end is not None:
            recovery.append(end - retried[0]["at"])
        if shard_cids(answer) != list(reference.get(outcome.spec, [])):
            differ.append(record["job"]["id"])
    return {
        "completed": states["completed"],
        "error": states["error"],
        "cancelled": states["cancelled"],
        "open": states["open"],
        "unreadable": unreadable,
        "reasons": [{"reason": r, "count": c} for r, c in reasons.most_common(REASONS_SHOWN)],
        "retries": retries,
        "detection_s": p50_p95(detection),
        "recovery_s": p50_p95(recovery),
        "results_differ": len(differ),
        "results_differ_jobs": differ[:REASONS_SHOWN],
    }


# -- submissions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """A job a node accepted: the bench's index of it (its spec is ``index % SPECS``)
    and its requester, the node that accepted it."""

    index: int
    job_id: str
    node: int
    at: float  # wall clock, as the nodes' events


class Ledger:
    """What the submitters got, shared with the chaos thread, which waits here for
    the next accepted job when it kills a requester."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.accepted: list[Accepted] = []
        self.refused: list[str] = []
        self.retried = 0  # tries on a node that could not answer; another try followed
        self.closed = False

    def accept(self, job: Accepted) -> None:
        with self._changed:
            self.accepted.append(job)
            self._changed.notify_all()

    def refuse(self, why: str) -> None:
        with self._changed:
            self.refused.append(why[:200])

    def failed_try(self) -> None:
        with self._changed:
            self.retried += 1

    def close(self) -> None:
        """No more submissions: nobody should wait for one."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def next_accepted(self, timeout: float) -> Accepted | None:
        """The next job accepted from now on, or None within ``timeout`` or once closed."""
        with self._changed:
            seen = len(self.accepted)
            self._changed.wait_for(lambda: len(self.accepted) > seen or self.closed, timeout)
            return self.accepted[seen] if len(self.accepted) > seen else None


def submit_one(
    index: int, spec: JobSpec, clients: Mapping[int, NodeClient], ledger: Ledger
) -> None:
    """Submit job ``index`` to its node, or to the next when one is down, until a node
    takes it or :data:`SUBMIT_GIVE_UP_S` has passed. A node killed while it answered
    may have stored the job without our hearing of it: that one is not ours (its
    requester takes it back when it restarts, untracked here) and the job goes
    elsewhere.
    ``clients``: each node's API client by the node's index."""
    nodes = sorted(clients)
    give_up = time.monotonic() + SUBMIT_GIVE_UP_S
    while True:
        for node in (nodes[k] for k in submit_order(index, len(nodes))):
            try:
                job_id = clients[node].submit(spec)["id"]
            except NodeApiError as exc:
                if not retryable(exc):
                    ledger.refuse(f"refused: {exc}")
                    return
                ledger.failed_try()
                continue
            ledger.accept(Accepted(index, job_id, node, time.time()))
            return
        if time.monotonic() > give_up:
            ledger.refuse(f"no node took it in {SUBMIT_GIVE_UP_S:.0f}s")
            return
        time.sleep(0.5)  # every node refused: give the restarting one a moment


def submit_paced(
    ledger: Ledger,
    jobs: int,
    rate: float,
    spec_of: Callable[[int], JobSpec],
    nodes: Sequence[NodeEntry],
) -> None:
    """Submit ``jobs`` jobs, job ``i`` at ``i / rate`` s from now, into ``ledger``;
    returns once every one was accepted or given up (the chaos thread reads the
    ledger as it fills: :meth:`Ledger.next_accepted`)."""
    clients = {n.index: NodeClient(n.api) for n in nodes}
    try:
        run_paced(jobs, rate, lambda i: submit_one(i, spec_of(i), clients, ledger))
    finally:
        ledger.close()
        for client in clients.values():
            client.close()


def run_paced(count: int, rate: float, task: Callable[[int], None]) -> None:
    """Start ``task(i)`` for ``i`` in ``range(count)``, the i-th ``i / rate`` s from now,
    on :data:`SUBMITTERS` threads; returns once all have returned. A task's exception
    is raised here: a bug in a submitter is the bench's error, not lost."""
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=SUBMITTERS) as pool:
        futures = []
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            futures.append(pool.submit(task, i))
        for future in futures:
            future.result()


# -- the chaos thread -----------------------------------------------------------------


@dataclass
class Kill:
    """One kill and the restart after it."""

    number: int
    node: int
    pid: int
    started: float
    at: float  # wall clock, as the nodes' events
    of_requester: bool
    job_id: str | None = None  # the job whose requester this was
    job_open: bool | None = None  # that job was still open at the kill (read at the end)
    restarted_pid: int | None = None
    restarted_started: float | None = None
    ready_after_s: float | None = None  # from the restart; None if never ready in time


def wait_gone(pid: int, started: float) -> None:
    """Wait until the killed ``pid`` is gone, reaping it if it is our child (a node we
    forked, or started again); BenchError if it outlives :data:`GONE_TIMEOUT_S`."""
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not st.is_alive(pid, started):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"pid {pid} still runs {GONE_TIMEOUT_S:.0f}s after SIGKILL")
        time.sleep(0.02)


def wait_ready(api: str, timeout: float, abort: threading.Event) -> float | None:
    """Seconds until the node at ``api`` says it is ready (healthy, in the gossip
    mesh); None if not within ``timeout`` or once ``abort`` is set."""
    start = time.monotonic()
    with NodeClient(api) as client:
        while time.monotonic() - start < timeout:
            with contextlib.suppress(NodeApiError):
                if client.health().get("ready"):
                    return time.monotonic() - start
            if abort.wait(0.2):
                return None
    return None


class Chaos:
    """Kills a node every ``every`` seconds and restarts it ``pause`` seconds later,
    one node at a time: the next kill waits until the last one's node is back.

    Any node may be killed, the bootstrap node (0) too: ``restart_node`` dials a
    node's recorded peers again, and those are node 0 and up to 4 others
    (``choose_peers``; node 0 itself dials node 1), so with one node down at a time
    every restarted node finds a live peer, and nodes that were never killed no
    longer need node 0 once they have joined.
    """

    def __init__(
        self,
        cluster: BenchCluster,
        ledger: Ledger,
        *,
        every: float,
        pause: float,
        max_kills: int | None,
        seed: int,
    ) -> None:
        self.cluster = cluster
        self.ledger = ledger
        self.every, self.pause, self.max_kills = every, pause, max_kills
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self.stop = threading.Event()  # the submissions are done: no more kills
        self.abort = threading.Event()  # the bench is failing: do not restart, leave
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """Stop killing, let the node down (if any) come back, and wait for that."""
        self.stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # re-raised in the bench's thread
            self.error = exc

    def _loop(self) -> None:
        due = time.monotonic() + self.every
        number = 0
        while self.max_kills is None or number < self.max_kills:
            if self.stop.wait(max(0.0, due - time.monotonic())):
                return
            number += 1
            state = st.load(self.cluster.state_dir)
            if state is None:
                raise BenchError("the devstack's state file is gone")
            live = {n.index: n for n in st.live_nodes(state)}
            # Read before the wait: a noop job may end within milliseconds of its
            # acceptance, so its requester is killed the moment the bench hears of it.
            job = self.ledger.next_accepted(self.every) if is_requester_kill(number) else None
            if self.stop.is_set() or self.ledger.closed:
                return  # the last submission went: no kill after it
            node, of_requester = choose_victim(
                number, sorted(live), job.node if job else None, self.rng
            )
            self._kill_and_restart(number, live[node], of_requester, job)
            due = max(due + self.every, time.monotonic())

    def _kill_and_restart(
        self, number: int, entry: NodeEntry, of_requester: bool, job: Accepted | None
    ) -> None:
        if not st.is_alive(entry.pid, entry.started):
            # It died on its own since it was seen alive: its pid may be another's now.
            say(f"kill {number}: {entry.name} (pid {entry.pid}) is gone already; not killed")
            return
        os.kill(entry.pid, signal.SIGKILL)
        # Timed once sent: SIGKILL ends the process before it runs again.
        kill = Kill(
            number=number,
            node=entry.index,
            pid=entry.pid,
            started=entry.started,
            at=time.time(),
            of_requester=of_requester,
            job_id=job.job_id if of_requester and job else None,
        )
        self.kills.append(kill)
        wait_gone(entry.pid, entry.started)
        what = "the requester of an open job" if of_requester else "a random node"
        say(f"kill {number}: {entry.name} (pid {entry.pid}), {what}")
        if self.abort.wait(self.pause):
            return  # `down` ends the cluster; nothing to restart
        try:
            restarted = restart_node(self.cluster.state_dir, str(entry.index))
        except ClusterError as exc:
            raise BenchError(f"could not restart {entry.name}: {exc}") from None
        kill.restarted_pid, kill.restarted_started = restarted.pid, restarted.started
        kill.ready_after_s = wait_ready(restarted.api, READY_TIMEOUT_S, self.abort)
        if kill.ready_after_s is None:
            say(f"  {entry.name} restarted (pid {restarted.pid}) but is not ready")
        else:
            ready = kill.ready_after_s
            say(f"  {entry.name} restarted (pid {restarted.pid}), ready in {ready:.1f}s")


# -- reading the jobs -----------------------------------------------------------------


def read_final(api: str, job_id: str, deadline: float) -> dict[str, Any] | None:
    """The requester's describe of ``job_id`` once the job ended, or as it stands at
    ``deadline``; None if the requester cannot be asked by then."""
    while True:
        try:
            return wait_for_job(api, job_id, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            with contextlib.suppress(NodeApiError), NodeClient(api) as client:
                return client.describe(job_id)
            return None
        except NodeApiError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)  # its requester is restarting: ask again


def read_all(wanted: Sequence[tuple[str, str]], deadline: float) -> list[dict[str, Any] | None]:
    """:func:`read_final` of each (requester API, job id), in order."""
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(lambda pair: read_final(*pair, deadline), wanted))


def reference_cids(
    nodes: Sequence[NodeEntry], engine: str, image: str, specs: int
) -> dict[int, list[str | None]]:
    """Each spec's published CIDs on the quiet cluster (one job of each, spread over
    the nodes); BenchError if one of them does not complete."""
    submitted = []
    for k in range(specs):
        node = nodes[k % len(nodes)]
        with NodeClient(node.api) as client:
            submitted.append((node.api, client.submit(job_spec(engine, k, image))["id"]))
    deadline = time.monotonic() + SETTLE_S
    cids: dict[int, list[str | None]] = {}
    for k, answer in enumerate(read_all(submitted, deadline)):
        if answer is None or answer["job"]["state"] != "completed":
            state = answer["job"]["state"] if answer else "unreadable"
            reason = answer["job"].get("reason") if answer else None
            raise BenchError(f"the reference job of spec {k} ended {state}: {reason}")
        cids[k] = shard_cids(answer)
    return cids


def reference_runs(
    nodes: Sequence[NodeEntry], args: argparse.Namespace
) -> dict[int, list[str | None]]:
    """:func:`reference_cids` of the bench's ``--engine`` and ``--image``, said first."""
    specs = min(SPECS, args.jobs)
    say(f"reference: one {args.engine} job of each of {specs} specs on the quiet cluster")
    return reference_cids(nodes, args.engine, args.image, specs)


def leftover_containers(peer_ids: Sequence[str]) -> list[str] | None:
    """:func:`node_containers` once the removals the last runs queued are done (or
    what is still there after :data:`LEFTOVER_WAIT_S`: a killed node's)."""
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while True:
        left = node_containers(peer_ids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


# -- the bench --------------------------------------------------------------------------


def run_chaos(cluster: BenchCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Reference runs, then the submissions under chaos, then every job's outcome."""
    if len(cluster.state.nodes) < 2:
        raise BenchError("chaos needs at least 2 nodes: one to kill and one to submit to")
    nodes = sorted(cluster.state.nodes, key=lambda n: n.index)
    reference = reference_runs(nodes, args)
    say(
        f"submitting {args.jobs} jobs at {args.rate:g}/s; a node killed every"
        f" {args.kill_every:g}s, restarted after {args.pause:g}s"
    )
    ledger = Ledger()
    chaos = Chaos(
        cluster,
        ledger,
        every=args.kill_every,
        pause=args.pause,
        max_kills=args.max_kills,
        seed=args.seed,
    )
    start = time.monotonic()
    chaos.start()
    try:
        submit_paced(
            ledger, args.jobs, args.rate, lambda i: job_spec(args.engine, i, args.image), nodes
        )
        submitted_s = time.monotonic() - start
        say(f"submitted in {submitted_s:.1f}s; the node down (if any) comes back first")
        chaos.finish()
    except BaseException:
        chaos.abort.set()  # no restart after this: the cluster is about to go down
        chaos.finish()
        raise
    deadline = start + submitted_s + args.settle
    if chaos.error is not None:
        raise BenchError(f"the chaos thread failed: {chaos.error}") from chaos.error
    accepted = sorted(ledger.accepted, key=lambda a: a.index)
    say(f"waiting up to {args.settle:g}s after the last submission for {len(accepted)} jobs")
    api_of = {n.index: n.api for n in nodes}
    answers = read_all([(api_of[a.node], a.job_id) for a in accepted], deadline)
    ended_s = time.monotonic() - start
    outcomes = [Outcome(a.index % SPECS, ans) for a, ans in zip(accepted, answers, strict=True)]
    figures = tally(outcomes, reference)
    answer_of = {a.job_id: ans for a, ans in zip(accepted, answers, strict=True)}
    for kill in chaos.kills:
        if kill.job_id is not None:
            kill.job_open = open_at(answer_of.get(kill.job_id), kill.at)
    # The restarts changed pids: what is left to check is in the state file now.
    cluster.state = st.load(cluster.state_dir) or cluster.state
    peer_ids = [n.peer_id for n in cluster.state.nodes]
    left = leftover_containers(peer_ids)
    of_requesters = sum(k.of_requester for k in chaos.kills)
    return {
        "bench": "chaos",
        "nodes": len(nodes),
        "engine": args.engine,
        "dispatch": cluster.state.dispatch,
        "jobs": args.jobs,
        "rate": args.rate,
        "kill_every_s": args.kill_every,
        "pause_s": args.pause,
        "settle_s": args.settle,
        "submitted": len(accepted),
        "refused": ledger.refused[:REASONS_SHOWN],
        "refused_count": len(ledger.refused),
        "submit_retries": ledger.retried,
        **figures,
        "kills": {
            "total": len(chaos.kills),
            "of_requesters": of_requesters,
            # Every node computes; these are the random picks, whatever they ran.
            "of_compute_nodes": len(chaos.kills) - of_requesters,
            "requester_job_open": sum(bool(k.job_open) for k in chaos.kills),
            "not_ready_after_restart": sum(
                k.ready_after_s is None for k in chaos.kills if k.restarted_pid is not None
            ),
        },
        "kill_log": [asdict(k) for k in chaos.kills],
        "reference": {str(k): v for k, v in reference.items()},
        "submit_s": round(submitted_s, 2),
        "wall_s": round(ended_s, 2),
        "leftover_containers": None if left is None else len(left),
        "leftover_container_names": (left or [])[:REASONS_SHOWN],
        "reused": not cluster.temporary,
        **cluster.describe(),
    }


def after_down(result: dict[str, Any]) -> dict[str, Any]:
    """What the bench's cluster left once it was taken down: node processes (every pid
    it ever had, killed ones too: ``kill_log``) still running, and containers of its
    nodes."""
    pids = [(p["pid"], p["started"]) for p in result["node_processes"]]
    pids += [(k["pid"], k["started"]) for k in result.get("kill_log", [])]
    running = sorted({pid for pid, started in pids if st.is_alive(pid, started)})
    containers = node_containers([p["peer_id"] for p in result["node_processes"]])
    return {"processes": running, "containers": None if containers is None else len(containers)}


def left_lines(r: dict[str, Any]) -> list[str]:
    """What the cluster left: containers at the end, and after ``down`` if it went."""
    lines = [f"containers of the cluster's nodes left at the end: {r['leftover_containers']}"]
    if "left_after_down" in r:
        down = r["left_after_down"]
        lines.append(
            f"after `devstack down`: {len(down['processes'])} node processes,"
            f" {down['containers']} containers"
        )
    return lines


def chaos_text(r: dict[str, Any]) -> str:
    """The chaos result for people."""

    def q(fig: dict[str, Any]) -> str:
        if not fig["n"]:
            return "none"
        return f"p50 {fig['p50']:g} / p95 {fig['p95']:g} s (n={fig['n']})"

    kills = r["kills"]
    lines = [
        f"{r['engine']} jobs on {r['nodes']} nodes ({r['dispatch']} dispatch): {r['jobs']} at"
        f" {r['rate']:g}/s, a node SIGKILLed every {r['kill_every_s']:g}s and restarted"
        f" {r['pause_s']:g}s later",
        f"jobs: {r['completed']} completed, {r['error']} error, {r['cancelled']} cancelled,"
        f" {r['open']} still open at the end ({r['unreadable']} unreadable);"
        f" {r['submitted']} accepted, {r['refused_count']} refused;"
        f" {r['submit_retries']} submissions retried on another node",
    ]
    if r["reasons"]:
        lines.append("reasons of the jobs that did not complete:")
        lines += [f"  {x['count']} x {x['reason']}" for x in r["reasons"]]
    lines += [
        f"retry events: {r['retries']}; detection {q(r['detection_s'])};"
        f" recovery (retry to completed) {q(r['recovery_s'])}",
        f"kills: {kills['total']} ({kills['of_requesters']} of a requester, its job still open"
        f" at the kill in {kills['requester_job_open']}; {kills['of_compute_nodes']} of a"
        f" random node); restarted nodes not ready within {READY_TIMEOUT_S:.0f}s:"
        f" {kills['not_ready_after_restart']}",
        f"completed jobs whose results differ from the run without chaos: {r['results_differ']}",
        *left_lines(r),
    ]
    lines.append(
        f"submitted in {r['submit_s']:g}s; every job read {r['wall_s']:g}s after the first"
    )
    lines += [f"REFUSED: {why}" for why in r["refused"]]
    return "\n".join(lines)


def run_and_report(
    args: argparse.Namespace,
    body: Callable[[BenchCluster, argparse.Namespace], dict[str, Any]],
    text: Callable[[dict[str, Any]], str],
) -> int:
    """Run ``body`` on the bench's cluster, add what the cluster left once down, and
    print it (``text`` for people); BenchError if node processes or containers are left."""
    load = os.getloadavg()[0]
    reuse = args.state_dir if args.reuse else None
    with bench_cluster(args.nodes, reuse, dispatch=args.dispatch, hosts=args.hosts) as cluster:
        result = body(cluster, args)
    if cluster.temporary:
        result["left_after_down"] = after_down(result)
    report(result, args.json, text, load)
    left = result.get("left_after_down")
    if left and (left["processes"] or left["containers"]):
        raise BenchError(f"the cluster left {left} behind")
    return 0


def run(args: argparse.Namespace) -> int:
    """``devstack bench chaos``."""
    return run_and_report(args, run_chaos, chaos_text)
