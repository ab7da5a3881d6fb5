"""What every bench stands on: the cluster under test, settling, the report, summaries.

Each bench brings up its own devstack in a fresh temporary state dir
(:func:`bench_cluster`) and takes it down on every way out (success, error, Ctrl+C,
SIGTERM); with ``--reuse`` it measures the devstack running at ``--state-dir``
instead and leaves it up. Progress goes to stderr (:func:`say`); stdout gets only
the table, or with ``--json`` one JSON object (:func:`report`). Latencies are in
ms, memory in MiB (2**20 bytes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from devstack import state as st
from devstack.cluster import ClusterError, UpOptions
from devstack.state import ClusterState
from node.bidder import DEFAULT_BIDDER
from node.requester import DEFAULT_DISPATCH
from profiles.quantiles import percentile

MIB = float(1 << 20)


class BenchError(ClusterError):
    """A benchmark cannot go on; the text says why (the CLI prints it, exit 1)."""


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


def difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Median and p95 of ``a`` minus those of ``b``."""
    return {
        q: round(percentile(a, p) - percentile(b, p), 1) for q, p in (("median", 50), ("p95", 95))
    }


def ms_since(start: float) -> float:
    """Milliseconds since ``start``, a :func:`time.perf_counter` reading."""
    return (time.perf_counter() - start) * 1000.0


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
            "hosts": self.state.hosts,
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
    hosts: int = 0,
    bad_actors: int = 0,
    collude: bool = True,
    bad_actor_rate: float = 1.0,
) -> Iterator[BenchCluster]:
    """A ready devstack for the bench's duration (``slots`` shards at once per node;
    None: as many as the machine has cores; the last ``bad_actors`` nodes forge, as
    ``devstack up --bad-actors`` makes them).

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
                nodes=nodes,
                state_dir=state_dir,
                bidder=bidder,
                slots=slots,
                dispatch=dispatch,
                hosts=hosts,
                bad_actors=bad_actors,
                collude=collude,
                bad_actor_rate=bad_actor_rate,
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


def settle(seconds: float) -> None:
    """Let a devstack that just became ready quieten down: right after ``ready`` the
    nodes still swap membership tables twice a second and settle their meshes."""
    if seconds > 0:
        say(f"letting the cluster settle for {seconds:g}s")
        time.sleep(seconds)


# -- the report ----------------------------------------------------------------------


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
