"""``devstack bench output``: what a job printing 10 MB/s costs the jobs beside it.

Runs ``--jobs`` short CPU-bound Docker jobs one after another (the "other jobs")
on a devstack (2 nodes by default), three ways, in rounds: alone; beside a container printing
``--mb-per-s`` started by Docker alone (its output goes to Docker's default
``json-file`` log and nobody reads it: what the output costs a plain Docker
user); and beside the same command
submitted as a job, whose live output the nodes stream to its requester while a
client follows it (``GET /api/v1/jobs/{id}/logs?follow=true``, as ``devstack logs
JOB -f`` does). The ways run in a fresh random order each round. The streamed
job is placed on the node that did not request it (re-submitted until it is), so
its lines cross the warm stream. Reported per way:
the other jobs' latency (submit to completed, ms) and the time their containers
ran (``run_ms``), the slowdown of each against running alone, the CPU the nodes
and dockerd used, and for the streamed job the rate it printed at and how many
lines reached the follower or were lost.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

from devstack.bench.harness import (
    BenchCluster,
    BenchError,
    bench_cluster,
    format_table,
    report,
    say,
    settle,
    summarize,
)
from devstack.bench.native import NATIVE_LABEL, remove_labelled
from devstack.client import NodeClient
from devstack.jobs import TERMINAL
from node.models import JobSpec

WAYS = ("alone", "beside docker alone", "beside a streamed job")
_LINE = "x" * 99  # with its newline, 100 bytes
_OTHER_WORK = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done"
_PLACEMENT_TRIES = 8
_WAIT_S = 60.0
#: Seconds a chatty container runs before the other jobs start: past its start-up.
_STEADY_S = 2.0


def chatty_command(mb_per_s: float) -> list[str]:
    """A shell printing 1 MiB of 100-byte lines ``mb_per_s`` times a second, forever."""
    pause_us = int(1e6 / mb_per_s)
    return [
        "sh",
        "-c",
        f"yes {_LINE} | head -c 1048576 > /tmp/mb;"
        f" while :; do cat /tmp/mb; usleep {pause_us}; done",
    ]


@dataclass
class WaySamples:
    """One way's figures over every round."""

    latency_ms: list[float] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)
    node_cpu_s: float = 0.0
    dockerd_cpu_s: float = 0.0
    wall_s: float = 0.0
    streamed_lines: int = 0
    lost_lines: int = 0
    printed_mb_per_s: list[float] = field(default_factory=list)


def _dockerd() -> psutil.Process | None:
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "dockerd":
            return process
    return None


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _run_ms(answer: dict[str, Any]) -> float | None:
    for event in answer.get("events", []):
        if event["kind"] == "proposed" and "run_ms" in event["detail"]:
            return float(event["detail"]["run_ms"])
    return None


def other_jobs(cluster: BenchCluster, jobs: int, image: str, samples: WaySamples) -> None:
    """Run ``jobs`` short CPU-bound jobs one after another, each to its end."""
    spec = JobSpec(image=image, command=["sh", "-c", _OTHER_WORK], timeout=_WAIT_S)
    nodes = cluster.state.nodes
    for index in range(jobs):
        api = nodes[index % len(nodes)].api
        with NodeClient(api) as client:
            started = time.perf_counter()
            job_id = client.submit(spec)["id"]
            answer = client.describe(job_id, wait=int(_WAIT_S))
            latency = (time.perf_counter() - started) * 1000.0
        state = answer["job"]["state"]
        if state != "completed":
            raise BenchError(f"other job {job_id} ended {state}: {answer['job'].get('reason')}")
        samples.latency_ms.append(latency)
        if (run := _run_ms(answer)) is not None:
            samples.run_ms.append(run)


@contextmanager
def measured(cluster: BenchCluster, samples: WaySamples) -> Iterator[None]:
    """Add the wall time and the CPU the nodes and dockerd used meanwhile to ``samples``."""
    nodes = cluster.processes()
    dockerd = _dockerd()
    node_cpu, docker_cpu = _cpu_s(nodes), _cpu_s([dockerd] if dockerd else [])
    started = time.monotonic()
    yield
    samples.wall_s += time.monotonic() - started
    samples.node_cpu_s += _cpu_s(nodes) - node_cpu
    samples.dockerd_cpu_s += _cpu_s([dockerd] if dockerd else []) - docker_cpu


@contextmanager
def docker_alone(image: str, mb_per_s: float) -> Iterator[None]:
    """The chatty command in a container of Docker's own, removed on the way out."""
    import docker

    client = docker.from_env()
    label = f"{NATIVE_LABEL}={uuid.uuid4()}"
    key, _, value = label.partition("=")
    try:
        client.containers.run(
            image, chatty_command(mb_per_s), detach=True, labels={key: value}, network_mode="none"
        )
        time.sleep(_STEADY_S)
        yield
    finally:
        remove_labelled(client, label)
        client.close()


def _running_on(client: NodeClient, job_id: str) -> str | None:
    """The node whose bid on the job was accepted (the requester knows no more)."""
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        answer = client.describe(job_id)
        for execution in answer["job"]["executions"]:
            if execution["state"] in ("accepted", "running"):
                return str(execution["node"])
        if answer["job"]["state"] in TERMINAL:
            raise BenchError(f"the chatty job {job_id} ended {answer['job']['state']}")
        time.sleep(0.1)
    raise BenchError(f"the chatty job {job_id} did not start within {_WAIT_S:g}s")


@contextmanager
def streamed_job(
    cluster: BenchCluster, image: str, mb_per_s: float, samples: WaySamples
) -> Iterator[None]:
    """The chatty command as a job on the node that did not request it, followed by a
    client; cancelled on the way out, when the follower's counts go to ``samples``."""
    requester = cluster.state.nodes[0]
    spec = JobSpec(image=image, command=chatty_command(mb_per_s), timeout=3600.0)
    client = NodeClient(requester.api)
    job_id = ""
    for _ in range(_PLACEMENT_TRIES):
        job_id = client.submit(spec)["id"]
        if _running_on(client, job_id) != requester.peer_id:
            break
        client.cancel(job_id)
    else:
        raise BenchError(f"the chatty job ran on its requester {_PLACEMENT_TRIES} times")
    started = time.monotonic()
    counts = {"lines": 0, "lost": 0}

    def follow() -> None:
        with NodeClient(requester.api) as reader:
            for record in reader.job_output(job_id, follow=True):
                if "dropped" in record:
                    counts["lost"] += record["dropped"]
                elif "line" in record:
                    counts["lines"] += 1

    follower = threading.Thread(target=follow, name="follow the chatty job", daemon=True)
    follower.start()
    try:
        time.sleep(_STEADY_S)
        yield
    finally:
        client.cancel(job_id)
        seconds = time.monotonic() - started
        client.close()
        follower.join(timeout=60)
    samples.streamed_lines += counts["lines"]
    samples.lost_lines += counts["lost"]
    printed = (counts["lines"] + counts["lost"]) * (len(_LINE) + 1) / seconds / 1e6
    samples.printed_mb_per_s.append(round(printed, 2))


def run(args: argparse.Namespace) -> int:
    """``devstack bench output``."""
    load = os.getloadavg()[0]
    samples = {way: WaySamples() for way in WAYS}
    reuse = args.state_dir if args.reuse else None
    with bench_cluster(args.nodes, reuse, dispatch=args.dispatch, hosts=args.hosts) as cluster:
        if len(cluster.state.nodes) < 2:
            raise BenchError("the output bench needs a devstack of at least 2 nodes")
        if cluster.temporary:
            settle(args.settle)
        order = random.Random(args.seed)
        for round_ in range(1, args.rounds + 1):
            # A fresh order each round, so the machine's drift favours no way.
            for way in order.sample(WAYS, len(WAYS)):
                say(f"round {round_}/{args.rounds}: {args.jobs} other jobs {way}")
                found = samples[way]
                if way == "alone":
                    with measured(cluster, found):
                        other_jobs(cluster, args.jobs, args.image, found)
                elif way == "beside docker alone":
                    with docker_alone(args.image, args.mb_per_s), measured(cluster, found):
                        other_jobs(cluster, args.jobs, args.image, found)
                else:
                    with (
                        streamed_job(cluster, args.image, args.mb_per_s, found),
                        measured(cluster, found),
                    ):
                        other_jobs(cluster, args.jobs, args.image, found)
        result = {
            "bench": "output",
            "jobs": args.jobs,
            "rounds": args.rounds,
            "mb_per_s": args.mb_per_s,
            "ways": {way: _figures(found) for way, found in samples.items()},
            **cluster.describe(),
        }
    alone = result["ways"]["alone"]
    for figures in result["ways"].values():
        figures["slowdown_pct"] = {
            key: round((figures[key]["mean"] / alone[key]["mean"] - 1) * 100, 1)
            for key in ("latency_ms", "run_ms")
            if figures[key] and alone[key]
        }
    report(result, args.json, _text, load)
    return 0


def _figures(found: WaySamples) -> dict[str, Any]:
    wall = found.wall_s or 1.0
    return {
        "latency_ms": summarize(found.latency_ms) if found.latency_ms else {},
        "run_ms": summarize(found.run_ms) if found.run_ms else {},
        "node_cores": round(found.node_cpu_s / wall, 3),
        "dockerd_cores": round(found.dockerd_cpu_s / wall, 3),
        "streamed_lines": found.streamed_lines,
        "lost_lines": found.lost_lines,
        "printed_mb_per_s": (
            round(statistics.fmean(found.printed_mb_per_s), 2) if found.printed_mb_per_s else None
        ),
    }


def _text(result: dict[str, Any]) -> str:
    ways = result["ways"]
    lines = [
        format_table(
            f"other jobs' latency, submit to completed (ms; {result['jobs']} jobs x"
            f" {result['rounds']} rounds per way)",
            [(way, figures["latency_ms"]) for way, figures in ways.items()],
        ),
        format_table(
            "their containers' run time (run_ms)",
            [(way, figures["run_ms"]) for way, figures in ways.items()],
        ),
        "slowdown of the mean against alone, and CPU (cores) while they ran",
    ]
    for way, figures in ways.items():
        slow = figures["slowdown_pct"]
        lines.append(
            f"  {way:<24} latency {slow.get('latency_ms', 0):+6.1f}%"
            f"  run {slow.get('run_ms', 0):+6.1f}%  nodes {figures['node_cores']:.2f}"
            f"  dockerd {figures['dockerd_cores']:.2f}"
        )
    streamed = ways["beside a streamed job"]
    lines.append(
        f"streamed job: printed {streamed['printed_mb_per_s']} MB/s;"
        f" {streamed['streamed_lines']} lines reached the follower,"
        f" {streamed['lost_lines']} were lost on the way (bounded buffers)"
    )
    return "\n".join(lines)
