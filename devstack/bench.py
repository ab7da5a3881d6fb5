"""``devstack bench``: benchmarks that print figures (not tests).

This module owns two benchmarks and the few things they share:

- ``overhead``: how much longer the same tiny container (``busybox echo hello``)
  takes when submitted to the cluster than when run natively, with the Docker
  CLI (``docker run --rm``) and with the Docker SDK. The cluster is timed twice:
  by the client (POST until the requester's describe says ``completed``) and by
  the requester's own event timestamps (``completed.at - created.at``), which
  also show where the time goes (``phases_ms``; ``compute:*`` phases are the
  requester's own compute steps when it ran the job itself). A cluster job that
  fails is recorded (``failures``) and the bench goes on.
- ``cluster``: what an N-node devstack costs: time until it is ready, memory
  (RSS and USS) per node, and the CPU the idle cluster burns.

Each bench brings up its own devstack in a fresh temporary state dir and takes
it down on every way out (success, error, Ctrl+C, SIGTERM); ``overhead --reuse``
measures the devstack running at ``--state-dir`` instead and leaves it up.
Progress goes to stderr; stdout gets only the table, or with ``--json`` one JSON
object. Latencies are in ms, memory in MiB (2**20 bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from devstack import state as st
from devstack.client import NodeClient
from devstack.cluster import ClusterError, UpOptions
from devstack.jobs import TERMINAL
from devstack.state import ClusterState
from node.argtypes import positive
from node.bidder import DEFAULT_BIDDER
from node.requester import DEFAULT_DISPATCH, DISPATCHES
from profiles.quantiles import percentile

COMMAND = ["echo", "hello"]
EXPECTED_STDOUT = "hello\n"
JOB_TIMEOUT_S = 120.0
#: Label of the containers the native runs start, so strays can be found and removed.
NATIVE_LABEL = "py-bacalhau.bench"
MIB = float(1 << 20)


class BenchError(ClusterError):
    """A benchmark cannot go on; the text says why (the CLI prints it, exit 1)."""


class JobFailed(BenchError):
    """A cluster job ended other than ``completed``: a result the bench records, not an abort."""


def say(message: str) -> None:
    """Progress for the person watching: always stderr, so ``--json`` stays parseable."""
    print(message, file=sys.stderr, flush=True)


# -- figures -----------------------------------------------------------------------


def summarize(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    """``n``, ``median``, ``p95``, ``mean``, ``min`` and ``max`` of ``values``, rounded."""
    return {
        "n": len(values),
        "median": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "mean": round(statistics.fmean(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def inline(figures: Mapping[str, float]) -> str:
    """``name value`` pairs on one line, as the text tables print phases."""
    return "  ".join(f"{k} {v:g}" for k, v in figures.items())


def format_table(title: str, rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    """A fixed-width table of summaries (:func:`summarize`); absent columns print blank."""
    columns = ("n", "median", "p95", "mean", "min", "max")
    width = max(len(name) for name, _ in rows)
    lines = [title, f"{'':<{width}} " + " ".join(f"{c:>9}" for c in columns)]
    for name, summary in rows:
        cells = []
        for c in columns:
            value = summary.get(c)
            cells.append(f"{'':>9}" if value is None else f"{value:>9g}")
        lines.append(f"{name:<{width}} " + " ".join(cells))
    return "\n".join(lines)


# -- the cluster under test --------------------------------------------------------


@dataclass
class BenchCluster:
    """The devstack a bench runs against, and how long it took to be ready."""

    state: ClusterState
    state_dir: Path
    temporary: bool
    ready_s: float | None = None
    fork_to_ready_s: float | None = None

    def processes(self) -> list[psutil.Process]:
        """One :class:`psutil.Process` per node; raises BenchError if a node is gone."""
        procs = []
        for node in self.state.nodes:
            if not st.is_alive(node.pid, node.started):
                raise BenchError(f"{node.name} (pid {node.pid}) is no longer running")
            procs.append(psutil.Process(node.pid))
        return procs

    def describe(self) -> dict[str, Any]:
        """Where the cluster lives and its node processes (to check nothing is left)."""
        return {
            "state_dir": str(self.state_dir),
            "node_processes": [
                {"pid": n.pid, "started": n.started, "peer_id": n.peer_id} for n in self.state.nodes
            ],
        }


def _boottime_started(pid: int) -> float | None:
    """When ``pid`` started, in seconds on CLOCK_BOOTTIME (10 ms steps); None if unknown.

    psutil's ``create_time`` adds the boot time in whole seconds, too coarse here.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt meanwhile, so a killed bench still cleans up."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _down_uninterrupted(state_dir: Path) -> None:
    """Take the temporary cluster down, ignoring a second Ctrl+C while it goes."""
    from devstack import cluster as launcher

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        launcher.down(state_dir, say=say)
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def bench_cluster(
    nodes: int,
    reuse: Path | None = None,
    *,
    bidder: str = DEFAULT_BIDDER,
    slots: int | None = None,
    dispatch: str = DEFAULT_DISPATCH,
) -> Iterator[BenchCluster]:
    """A ready devstack for the bench's duration (``slots`` shards at once per node;
    None: as many as the machine has cores).

    With ``reuse``, the live devstack recorded there (left running afterwards).
    Otherwise ``nodes`` fresh nodes in a new temporary state dir, taken down and
    the dir removed on the way out; if the bench failed, the dir and its logs
    are kept and their path is printed.
    """
    if reuse is not None:
        cluster = st.load(reuse)
        if cluster is None or not st.live_nodes(cluster):
            raise BenchError(f"--reuse: no devstack is running with its state in {reuse}")
        say(f"reusing the {len(cluster.nodes)}-node devstack in {reuse}")
        yield BenchCluster(cluster, reuse, temporary=False)
        return

    from devstack import cluster as launcher

    state_dir = Path(tempfile.mkdtemp(prefix="devstack-bench-"))
    ok = False
    with sigterm_as_interrupt():
        try:
            say(f"starting {nodes} nodes in {state_dir}")
            started = time.monotonic()
            options = UpOptions(
                nodes=nodes, state_dir=state_dir, bidder=bidder, slots=slots, dispatch=dispatch
            )
            cluster = launcher.up(options, say=say)
            ready_s = time.monotonic() - started
            forks = [_boottime_started(n.pid) for n in cluster.nodes]
            first_fork = min((f for f in forks if f is not None), default=None)
            fork_to_ready_s = (
                time.clock_gettime(time.CLOCK_BOOTTIME) - first_fork
                if first_fork is not None
                else None
            )
            say(f"ready in {ready_s:.1f}s")
            yield BenchCluster(cluster, state_dir, True, ready_s, fork_to_ready_s)
            ok = True
        finally:
            _down_uninterrupted(state_dir)
            if ok:
                shutil.rmtree(state_dir, ignore_errors=True)
            else:
                say(f"the cluster is down; its logs are kept in {state_dir / 'logs'}")


def report(
    result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str], load: float
) -> None:
    """Add the host's CPU count and load (1-minute average at the start and at the end:
    other work on the host skews every figure) to ``result``, then print it."""
    result["host"] = {
        "cpus": os.cpu_count(),
        "load_start": round(load, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    host = result["host"]
    print(
        f"{text(result)}\nhost: {host['cpus']} CPUs, 1-min load average"
        f" {host['load_start']:g} at the start, {host['load_end']:g} at the end"
    )


# -- overhead ----------------------------------------------------------------------


@dataclass
class ClusterRun:
    """One job through the cluster: client wall time, requester event times (ms), the
    compute node's executor phases and the phases after its container exited."""

    wall_ms: float
    events_ms: float
    phases_ms: dict[str, float]
    on_requester: bool
    executor_ms: dict[str, float] = field(default_factory=dict)
    after_exit_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class OverheadSamples:
    """What the measured rounds of the overhead bench collected (ms)."""

    cluster_wall: list[float] = field(default_factory=list)
    cluster_events: list[float] = field(default_factory=list)
    docker_cli: list[float] = field(default_factory=list)
    docker_sdk: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)
    executor: dict[str, list[float]] = field(default_factory=dict)
    after_exit: dict[str, list[float]] = field(default_factory=dict)
    on_requester: int = 0
    failures: list[str] = field(default_factory=list)

    def add_cluster(self, run: ClusterRun) -> None:
        self.cluster_wall.append(run.wall_ms)
        self.cluster_events.append(run.events_ms)
        for into, values in (
            (self.phases, run.phases_ms),
            (self.executor, run.executor_ms),
            (self.after_exit, run.after_exit_ms),
        ):
            for kind, ms in values.items():
                into.setdefault(kind, []).append(ms)
        self.on_requester += run.on_requester


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _wait_until_done(client: NodeClient, job_id: str, deadline: float) -> dict[str, Any]:
    """The requester's describe of ``job_id`` once it says completed (the requester
    answers as soon as the job ends: no polling); JobFailed otherwise."""
    while True:
        answer = client.describe(job_id, wait=30)
        record = answer["job"]
        if record["state"] == "completed":
            return answer
        if record["state"] in TERMINAL:
            raise JobFailed(f"job {job_id} ended {record['state']}: {record['reason']}")
        if time.perf_counter() > deadline:
            raise JobFailed(f"job {job_id} still {record['state']} after {JOB_TIMEOUT_S:.0f}s")


def run_cluster_job(api: str, spec: dict[str, Any]) -> ClusterRun:
    """Submit ``spec`` to the node at ``api`` and wait for the job to end.

    Each job gets a new client (made before the clock starts): a pooled connection
    left idle between jobs can race the server's keep-alive timeout and be reset.
    Raises JobFailed if the job does not complete, BenchError if its stdout is wrong.
    """
    with NodeClient(api) as client:
        start = time.perf_counter()
        job_id = client.submit(spec)["id"]
        answer = _wait_until_done(client, job_id, start + JOB_TIMEOUT_S)
        wall_ms = ms_since(start)
    record = answer["job"]
    requester = answer["requester"]
    first: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    for event in answer["events"]:
        if event["node"] == requester:
            # The requester's own compute steps, when it ran the job itself, are prefixed.
            role = event["detail"].get("role")
            kind = f"{role}:{event['kind']}" if role else event["kind"]
            first.setdefault(kind, event["at"])
            details.setdefault(kind, event["detail"])
    created = first["created"]
    published = [e for e in record["executions"] if e["state"] == "published"]
    previews = {e.get("stdout_preview") for e in record["executions"]} - {None}
    if previews and previews != {EXPECTED_STDOUT}:
        raise BenchError(f"job {job_id} printed {previews!r}, not {EXPECTED_STDOUT!r}")
    proposed = details.get("proposed", {}).get("phases_ms") or {}
    executor = {k: v for k, v in proposed.items() if k not in AFTER_EXIT_ON_COMPUTE}
    return ClusterRun(
        wall_ms=wall_ms,
        events_ms=(first["completed"] - created) * 1000.0,
        phases_ms={k: (at - created) * 1000.0 for k, at in first.items() if k != "created"},
        on_requester=any(e["node"] == requester for e in published),
        executor_ms=executor,
        after_exit_ms=_after_exit(first, proposed, details.get("published", {})),
    )


# What the compute node reports of its own time after the container exited.
AFTER_EXIT_ON_COMPUTE = ("results", "seal")


def _after_exit(
    first: dict[str, float], proposed: dict[str, float], published: dict[str, Any]
) -> dict[str, float]:
    """The phases after the container exited, ms: the compute node's (storing the
    results tree, sealing its CID), then by the requester's clock from the proposal
    it received to the verdict it sent, to the result published, to the job completed
    (``publish``: the publisher's own part of the second). ``total`` sums them; only
    the proposal's transit between the two is not counted."""
    if not {"proposed", "results_accepted", "published", "completed"} <= first.keys():
        return {}
    phases = {k: float(proposed.get(k, 0.0)) for k in AFTER_EXIT_ON_COMPUTE}
    phases["to_verdict"] = (first["results_accepted"] - first["proposed"]) * 1000
    phases["to_published"] = (first["published"] - first["results_accepted"]) * 1000
    phases["publish"] = float(published.get("publish_ms", 0.0))
    phases["to_completed"] = (first["completed"] - first["published"]) * 1000
    phases["total"] = sum(
        phases[k] for k in ("results", "seal", "to_verdict", "to_published", "to_completed")
    )
    return phases


def run_docker_cli(image: str, label: str) -> float:
    """``docker run --rm IMAGE echo hello`` as a subprocess; its wall time in ms."""
    argv = ["docker", "run", "--rm", "--label", label, image, *COMMAND]
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"`{' '.join(argv)}` failed: {exc}") from None
    elapsed = ms_since(start)
    if done.returncode != 0 or done.stdout != EXPECTED_STDOUT:
        raise BenchError(
            f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout)[:300]}"
        )
    return elapsed


def run_docker_sdk(client: Any, image: str, label: str) -> float:
    """``containers.run(IMAGE, ["echo", "hello"], remove=True)``; its wall time in ms."""
    import docker.errors

    key, _, value = label.partition("=")
    start = time.perf_counter()
    try:
        out = client.containers.run(image, COMMAND, remove=True, labels={key: value})
    except docker.errors.DockerException as exc:
        raise BenchError(f"the Docker SDK run of {image} failed: {exc}") from None
    elapsed = ms_since(start)
    if out.decode("utf-8", "replace") != EXPECTED_STDOUT:
        raise BenchError(f"the Docker SDK run printed {out[:200]!r}, not {EXPECTED_STDOUT!r}")
    return elapsed


def remove_labelled(client: Any, label: str) -> int:
    """Force-remove every container carrying ``label`` (what an interrupted run left)."""
    removed = 0
    with contextlib.suppress(Exception):
        for container in client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
    return removed


def measure_overhead(
    cluster: BenchCluster,
    *,
    jobs: int,
    warmup: int,
    image: str,
    beside: BenchCluster | None = None,
) -> tuple[OverheadSamples, OverheadSamples | None, str]:
    """``warmup`` unrecorded rounds, then ``jobs`` rounds; each round runs the cluster
    job (and one on ``beside``, a second cluster of another size, if given), the CLI
    run and the SDK run once, in a fresh random order. Returns the samples of each
    cluster (both with the same native samples) and the label the native containers
    carried."""
    import docker
    import docker.errors

    spec = {"engine": "docker", "image": image, "command": COMMAND, "deal": {"concurrency": 1}}
    label = f"{NATIVE_LABEL}={uuid.uuid4().hex[:12]}"
    clusters = {"cluster": cluster} | ({"beside": beside} if beside is not None else {})
    nodes = {name: st.live_nodes(c.state) for name, c in clusters.items()}
    rng = random.Random()
    samples = {name: OverheadSamples() for name in clusters}
    try:
        sdk = docker.from_env(timeout=int(JOB_TIMEOUT_S))
    except docker.errors.DockerException as exc:
        raise BenchError(f"Docker is not usable: {exc}") from None
    try:
        for round_ in range(-warmup, jobs):
            via = {name: live[round_ % len(live)] for name, live in nodes.items()}
            runs: dict[str, Callable[[], Any]] = {
                name: (lambda api=node.api: _attempt(run_cluster_job, api, spec))
                for name, node in via.items()
            }
            runs["cli"] = lambda: run_docker_cli(image, label)
            runs["sdk"] = lambda: run_docker_sdk(sdk, image, label)
            order = list(runs)
            rng.shuffle(order)
            got = {name: runs[name]() for name in order}
            what = "warm-up" if round_ < 0 else f"round {round_ + 1}/{jobs}"
            said = ", ".join(
                f"{len(nodes[name])} nodes via {via[name].name} {_said(got[name])}"
                for name in clusters
            )
            say(f"{what}: {said}, docker CLI {got['cli']:.0f}, SDK {got['sdk']:.0f}")
            if round_ < 0:
                continue
            for name, collected in samples.items():
                run: ClusterRun | JobFailed = got[name]
                if isinstance(run, JobFailed):
                    collected.failures.append(str(run))
                else:
                    collected.add_cluster(run)
                collected.docker_cli.append(got["cli"])
                collected.docker_sdk.append(got["sdk"])
    finally:
        if remove_labelled(sdk, label):
            say("removed containers an interrupted native run left")
        sdk.close()
    for name, collected in samples.items():
        if not collected.cluster_wall:
            raise BenchError(f"no {name} job completed; the last: {collected.failures[-1]}")
    return samples["cluster"], samples.get("beside"), label


def _said(run: ClusterRun | JobFailed) -> str:
    if isinstance(run, JobFailed):
        return f"FAILED ({run})"
    return f"{run.wall_ms:.0f} ms (events {run.events_ms:.0f})"


def _attempt(fn: Callable[..., ClusterRun], *args: Any) -> ClusterRun | JobFailed:
    """``fn(*args)``, or the JobFailed it raised."""
    try:
        return fn(*args)
    except JobFailed as exc:
        return exc


def difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Median and p95 of ``a`` minus those of ``b``."""
    return {
        q: round(percentile(a, p) - percentile(b, p), 1) for q, p in (("median", 50), ("p95", 95))
    }


def overhead_result(
    cluster: BenchCluster, samples: OverheadSamples, *, image: str, warmup: int, label: str
) -> dict[str, Any]:
    """The overhead bench's JSON object."""
    medians = {k: round(percentile(v, 50), 1) for k, v in samples.phases.items()}
    return {
        "bench": "overhead",
        "nodes": len(cluster.state.nodes),
        "dispatch": cluster.state.dispatch,
        "jobs": len(samples.docker_cli),
        "completed": len(samples.cluster_wall),
        "failures": samples.failures,
        "warmup": warmup,
        "image": image,
        "command": COMMAND,
        "reused": not cluster.temporary,
        "cluster_wall_ms": summarize(samples.cluster_wall),
        "cluster_events_ms": summarize(samples.cluster_events),
        "docker_cli_ms": summarize(samples.docker_cli),
        "docker_sdk_ms": summarize(samples.docker_sdk),
        "overhead_vs_cli_ms": difference(samples.cluster_wall, samples.docker_cli),
        "overhead_vs_sdk_ms": difference(samples.cluster_wall, samples.docker_sdk),
        "client_gap_ms": summarize(
            [w - e for w, e in zip(samples.cluster_wall, samples.cluster_events, strict=True)]
        ),
        "phases_ms": dict(sorted(medians.items(), key=lambda kv: (kv[1], kv[0]))),
        # Medians over the rounds: the executor's phases on the node that ran the job,
        # and every phase after its container exited (see _after_exit).
        "executor_phases_ms": {k: round(percentile(v, 50), 2) for k, v in samples.executor.items()},
        "after_exit_ms": {k: round(percentile(v, 50), 2) for k, v in samples.after_exit.items()},
        "ran_on_requester": samples.on_requester,
        "native_label": label,
        "samples_ms": {
            name: [round(v, 1) for v in values]
            for name, values in (
                ("cluster_wall", samples.cluster_wall),
                ("cluster_events", samples.cluster_events),
                ("docker_cli", samples.docker_cli),
                ("docker_sdk", samples.docker_sdk),
            )
        },
        **cluster.describe(),
    }


def overhead_text(r: dict[str, Any]) -> str:
    """The overhead result as a table for people (and the cluster beside it, if any)."""
    text = _one_overhead_text(r)
    if "beside" in r:
        b = r["beside"]
        text += (
            f"\n\nbeside it, in the same rounds, {b['nodes']} nodes:\n{_one_overhead_text(b)}"
            f"\n\n{b['nodes']} nodes against {r['nodes']} (median, same rounds):"
            f" {r['beside_vs_cluster_median']:+.1%}"
        )
    return text


def _one_overhead_text(r: dict[str, Any]) -> str:
    cmd = " ".join(r["command"])
    table = format_table(
        f"submit-to-completed of `{r['image']} {cmd}`, ms: {r['nodes']} nodes"
        f" ({r['dispatch']} dispatch),"
        f" {r['jobs']} rounds (+{r['warmup']} warm-up), concurrency 1",
        [
            ("cluster, client wall (POST..completed)", r["cluster_wall_ms"]),
            ("cluster, requester events", r["cluster_events_ms"]),
            ("docker run --rm (CLI)", r["docker_cli_ms"]),
            ("docker SDK containers.run", r["docker_sdk_ms"]),
            ("client wall - requester events", r["client_gap_ms"]),
            ("overhead: cluster wall - CLI", r["overhead_vs_cli_ms"]),
            ("overhead: cluster wall - SDK", r["overhead_vs_sdk_ms"]),
        ],
    )
    phases, executor = inline(r["phases_ms"]), inline(r["executor_phases_ms"])
    after = inline(r["after_exit_ms"])
    return (
        f"{table}\n\nmedian ms from `created` on the requester: {phases}\n"
        f"the executor's phases (median ms): {executor}\n"
        f"after the container exited (median ms): {after}\n"
        f"jobs run by their own requester: {r['ran_on_requester']}/{r['completed']}"
        + "".join(f"\nFAILED: {reason}" for reason in r["failures"])
    )


def bench_overhead(args: argparse.Namespace) -> int:
    """``devstack bench overhead``."""
    load = os.getloadavg()[0]
    reuse = args.state_dir if args.reuse else None
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(bench_cluster(args.nodes, reuse, dispatch=args.dispatch))
        beside = None
        if args.beside:
            beside = stack.enter_context(bench_cluster(args.beside, dispatch=args.dispatch))
        samples, beside_samples, label = measure_overhead(
            cluster, jobs=args.jobs, warmup=args.warmup, image=args.image, beside=beside
        )
        result = overhead_result(
            cluster, samples, image=args.image, warmup=args.warmup, label=label
        )
        if beside is not None and beside_samples is not None:
            second = overhead_result(
                beside, beside_samples, image=args.image, warmup=args.warmup, label=label
            )
            result["beside"] = second
            # Both clusters ran in the same rounds: the machine's drift cancels out.
            result["beside_vs_cluster_median"] = round(
                second["cluster_wall_ms"]["median"] / result["cluster_wall_ms"]["median"] - 1, 4
            )
    report(result, args.json, overhead_text, load)
    return 0


# -- cluster -----------------------------------------------------------------------


def cpu_seconds(procs: Sequence[psutil.Process]) -> list[float]:
    """User + system CPU seconds so far of each process."""
    return [sum(p.cpu_times()[:2]) for p in procs]


def settle(seconds: float) -> None:
    """Let a devstack that just became ready quieten down: right after ``ready`` the
    nodes still swap membership tables twice a second and settle their meshes."""
    if seconds > 0:
        say(f"letting the cluster settle for {seconds:g}s")
        time.sleep(seconds)


def measure_cluster(cluster: BenchCluster, *, seconds: float, settle_s: float) -> dict[str, Any]:
    """Idle CPU over ``seconds`` (after ``settle_s``), then memory of every node."""
    procs = cluster.processes()
    settle(settle_s)
    say(f"measuring idle CPU for {seconds:g}s")
    before, start = cpu_seconds(procs), time.monotonic()
    time.sleep(seconds)
    after, wall = cpu_seconds(procs), time.monotonic() - start
    per_node = [100.0 * (a - b) / wall for a, b in zip(after, before, strict=True)]
    memory = [p.memory_full_info() for p in cluster.processes()]
    return {
        "bench": "cluster",
        "nodes": len(procs),
        "dispatch": cluster.state.dispatch,
        "ready_s": round(cluster.ready_s or 0.0, 2),
        "fork_to_ready_s": (
            round(cluster.fork_to_ready_s, 2) if cluster.fork_to_ready_s is not None else None
        ),
        "rss_mib": summarize([m.rss / MIB for m in memory]),
        "uss_mib": summarize([m.uss / MIB for m in memory]),
        "pss_total_mib": round(sum(m.pss for m in memory) / MIB, 1),
        "idle_cpu_percent_of_core": round(sum(per_node), 2),
        "idle_cpu_percent_per_node": summarize(per_node, digits=2),
        "idle_seconds": round(wall, 2),
        "settle_seconds": settle_s,
        **cluster.describe(),
    }


def cluster_text(r: dict[str, Any]) -> str:
    """The cluster result for people."""
    fork = r["fork_to_ready_s"]
    table = format_table(
        f"{r['nodes']}-node devstack: memory per node, MiB",
        [("RSS", r["rss_mib"]), ("USS (private)", r["uss_mib"])],
    )
    return (
        f"ready {r['ready_s']:g}s after `up` was called"
        + (f" ({fork:g}s after the first node was forked)" if fork is not None else "")
        + f"\n{table}\ntotal PSS {r['pss_total_mib']:g} MiB\n"
        f"idle CPU over {r['idle_seconds']:g}s (after {r['settle_seconds']:g}s to settle):"
        f" {r['idle_cpu_percent_of_core']:g}% of one core in all,"
        f" median {r['idle_cpu_percent_per_node']['median']:g}% per node"
    )


def bench_cluster_cost(args: argparse.Namespace) -> int:
    """``devstack bench cluster``."""
    load = os.getloadavg()[0]
    with bench_cluster(args.nodes, dispatch=args.dispatch) as cluster:
        result = measure_cluster(cluster, seconds=args.seconds, settle_s=args.settle)
    report(result, args.json, cluster_text, load)
    return 0


# -- CLI -----------------------------------------------------------------------------


def add_cluster_args(
    p: argparse.ArgumentParser,
    *,
    nodes: int,
    settle: float | None = None,
    reuse: str | None = "use the devstack running at --state-dir (ignores --nodes, leaves it up)",
) -> None:
    """The options every bench shares: ``--nodes``, ``--settle`` (when ``settle`` is
    a default), ``--reuse`` (when it has help) and ``--json``."""
    p.add_argument(
        "--nodes", type=positive(int), default=nodes, help=f"nodes to start (default {nodes})"
    )
    if settle is not None:
        p.add_argument(
            "--settle",
            type=positive(float, zero=True),
            default=settle,
            help="seconds to wait after a fresh devstack is ready, while start-up chatter"
            f" dies down (default {settle:g})",
        )
    if reuse is not None:
        p.add_argument("--reuse", action="store_true", help=reuse)
    p.add_argument(
        "--dispatch",
        choices=DISPATCHES,
        default=DEFAULT_DISPATCH,
        help="dispatch of a fresh cluster: offers first (offer), or gossip alone"
        f" (default {DEFAULT_DISPATCH}; --reuse keeps the cluster's own)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_bench_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    p = sub.add_parser(
        "overhead",
        help="cluster latency vs a native docker run",
        description="Submit-to-completed latency of `busybox echo hello` through the"
        " cluster (concurrency 1, requester rotating over the nodes) against the same"
        " container run with the Docker CLI and SDK, interleaved in random order.",
    )
    add_cluster_args(p, nodes=5)
    p.add_argument("--jobs", type=positive(int), default=30, help="measured rounds (default 30)")
    p.add_argument(
        "--beside",
        type=positive(int),
        default=None,
        metavar="NODES",
        help="also measure a fresh cluster of this many nodes in the same rounds (e.g. 50"
        " beside --nodes 5), so the two compare without the machine's drift between runs",
    )
    p.add_argument(
        "--warmup", type=positive(int, zero=True), default=1, help="unrecorded rounds first"
    )
    p.add_argument("--image", default="busybox", help="a local image (default busybox)")
    p.set_defaults(bench_func=bench_overhead)

    p = sub.add_parser(
        "cluster",
        help="ready time, memory and idle CPU of an N-node devstack",
        description="Start N nodes in a temporary state dir; report the time to ready,"
        " RSS/USS per node and the CPU of the idle cluster; take it down.",
    )
    add_cluster_args(p, nodes=5, settle=15.0, reuse=None)
    p.add_argument(
        "--seconds", type=positive(float), default=30.0, help="idle CPU window (default 30)"
    )
    p.set_defaults(bench_func=bench_cluster_cost)

    from devstack import (
        bench_bids,
        bench_chaos,
        bench_executor,
        bench_load,
        bench_publish,
        bench_shards,
    )

    bench_bids.add_parser(sub, positive)
    bench_chaos.add_parser(sub)
    bench_executor.add_parser(sub)
    bench_load.add_parser(sub)
    bench_publish.add_parser(sub)
    bench_shards.add_parser(sub)


def run(args: argparse.Namespace) -> int:
    """Run the bench ``args.bench`` chose; its exit status."""
    return args.bench_func(args)
