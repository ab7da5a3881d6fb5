"""``devstack bench cli``: how soon each ``devstack`` verb prints its first line.

Runs each verb ``--runs`` times as a fresh process, as a user types it, against a
live devstack (``--help``, ``status``, ``list``, ``describe JOB``, ``submit --help``),
and takes the time from the process's start to its first line on stdout. For
``submit`` it times the start up to the HTTP call: the verb submits to a stand-in
node (a socket the bench listens on) and the time is when the request arrives.
Prints the median and p95 per verb.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devstack import state as st
from devstack.bench.harness import BenchError, bench_cluster, report, say, summarize
from devstack.bench.workload import noop_spec
from devstack.client import NodeClient

_DEADLINE_S = 30.0


def _devstack(state_dir: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "devstack.cli", "--state-dir", str(state_dir), *argv]


def first_line_ms(argv: Sequence[str]) -> float:
    """Milliseconds from starting ``argv`` to its first line on stdout (it must print one)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        elapsed = (time.perf_counter() - started) * 1000
        if not line:
            raise BenchError(f"{' '.join(argv)} printed nothing (exit {process.wait()})")
        return elapsed
    finally:
        process.kill()
        process.wait()


def http_call_ms(argv_for: Callable[[Path], list[str]]) -> float:
    """Milliseconds from starting the command to its first HTTP request reaching a
    stand-in node: a socket named as node-0's API in a state file of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        node = st.NodeEntry(
            index=0,
            pid=os.getpid(),
            started=time.time(),
            peer_id="stand-in",
            multiaddr="",
            api=f"http://127.0.0.1:{port}",
            swarm_port=0,
            api_port=port,
            data_dir=tmp,
            log_file=os.devnull,
        )
        cluster = st.ClusterState(
            launcher_pid=os.getpid(),
            launcher_started=time.time(),
            created_at=time.time(),
            nodes=[node],
        )
        st.save(Path(tmp), cluster)
        started = time.perf_counter()
        process = subprocess.Popen(
            argv_for(Path(tmp)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(server, selectors.EVENT_READ)
                if not selector.select(_DEADLINE_S):
                    raise BenchError("the verb made no HTTP call within 30 s")
            connection, _ = server.accept()
            with connection, selectors.DefaultSelector() as selector:
                selector.register(connection, selectors.EVENT_READ)
                selector.select(_DEADLINE_S)  # the request's first bytes
                return (time.perf_counter() - started) * 1000
        finally:
            process.kill()
            process.wait()


def run(args: argparse.Namespace) -> int:
    """``devstack bench cli``."""
    load = os.getloadavg()[0]
    samples: dict[str, list[float]] = {}
    with bench_cluster(
        args.nodes, args.state_dir if args.reuse else None, hosts=args.hosts
    ) as cluster:
        node = cluster.state.nodes[0]
        with NodeClient(node.api) as client:
            job_id = client.submit(noop_spec(1))["id"]
        state_dir = cluster.state_dir
        verbs: dict[str, Callable[[], float]] = {
            "--help": lambda: first_line_ms(_devstack(state_dir, "--help")),
            "status": lambda: first_line_ms(_devstack(state_dir, "status")),
            "list": lambda: first_line_ms(_devstack(state_dir, "list")),
            "describe": lambda: first_line_ms(_devstack(state_dir, "describe", job_id)),
            "submit --help": lambda: first_line_ms(_devstack(state_dir, "submit", "--help")),
            "submit (to the HTTP call)": lambda: http_call_ms(
                lambda tmp: _devstack(tmp, "submit", "busybox", "--", "echo", "hi")
            ),
        }
        say(f"running each verb {args.runs} times, in turn")
        for _ in range(args.runs):
            for name, measure in verbs.items():
                samples.setdefault(name, []).append(measure())
        result: dict[str, Any] = {
            "bench": "cli",
            "runs": args.runs,
            "verbs": {name: summarize(values) for name, values in samples.items()},
            **cluster.describe(),
        }
    report(result, args.json, _text, load)
    return 0


def _text(result: dict[str, Any]) -> str:
    lines = [f"devstack verbs, time to the first line (ms, {result['runs']} runs each)"]
    lines.append(f"  {'verb':<28} {'median':>7} {'p95':>7} {'max':>7}")
    for name, figures in result["verbs"].items():
        lines.append(
            f"  {name:<28} {figures['median']:>7.1f} {figures['p95']:>7.1f} {figures['max']:>7.1f}"
        )
    return "\n".join(lines)
