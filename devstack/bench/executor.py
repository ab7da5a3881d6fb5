"""``devstack bench executor``: what the node's Docker executor costs over the Docker SDK.

Each round runs ``IMAGE echo hello`` three ways, in a fresh random order: the
node's :meth:`DockerExecutor.run` (in ``trio.run``, a fresh results dir each
time, output collection included: stdout and stderr read, the results tree
written), the Docker SDK's ``containers.run(IMAGE, ["echo", "hello"],
remove=True)`` and ``docker run --rm``. One warm-up round comes first, not
recorded. Reported: median, p95 and mean of each, the executor minus the SDK
(median and p95), and the median of each executor phase (``phases_ms``). The
executor removes its container after ``run`` returns; the bench then waits for
that removal (timed apart, as ``deferred removal``) so it cannot slow the next
run down. No cluster is started.

The executor and the SDK client live for the whole bench, as in a node. Jobs
have no network unless they ask (``--network``), so by default the executor's
container has none, while the SDK's and the CLI's get Docker's default bridge.
Every container carries ``py-bacalhau.bench=<uuid>``; any left over are removed
at the end, also on Ctrl+C and SIGTERM. Progress goes to stderr; stdout gets
only the table, or with ``--json`` one JSON object. Times are in ms.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from devstack.bench.harness import (
    BenchError,
    difference,
    format_table,
    inline,
    ms_since,
    report,
    say,
    sigterm_as_interrupt,
    summarize,
)
from devstack.bench.native import (
    COMMAND,
    EXPECTED_STDOUT,
    NATIVE_LABEL,
    remove_labelled,
    run_docker_cli,
    run_docker_sdk,
)
from node.executors.base import PHASES, ExecutorError
from node.executors.docker import DockerExecutor
from node.models import JobSpec
from profiles.quantiles import percentile

WAYS = ("executor", "sdk", "cli")


@dataclass
class ExecutorSamples:
    """What the measured rounds collected (ms)."""

    runs: dict[str, list[float]] = field(default_factory=lambda: {way: [] for way in WAYS})
    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    removal: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutorRun:
    """One :meth:`DockerExecutor.run`: its wall time, its phases and how long the
    removal it left to the executor took after it returned (ms)."""

    wall_ms: float
    phases_ms: dict[str, float]
    removal_ms: float


def run_executor(executor: DockerExecutor, spec: JobSpec, label: str, work: Path) -> ExecutorRun:
    """``executor.run`` of ``spec`` in its own ``trio.run``, into a fresh dir under
    ``work``; then, untimed for the run, wait for the container's removal.

    Raises BenchError if the run fails or its stdout is not ``EXPECTED_STDOUT``.
    """
    key, _, value = label.partition("=")
    results = work / uuid.uuid4().hex

    async def main() -> ExecutorRun:
        start = time.perf_counter()
        result = await executor.run("bench-executor", 0, spec, results, labels={key: value})
        wall_ms = ms_since(start)
        removing = time.perf_counter()
        await executor.wait_removed()
        if result.exit_code != 0:
            raise BenchError(f"DockerExecutor.run of {spec.image} exited {result.exit_code}")
        return ExecutorRun(wall_ms, dict(result.phases_ms), ms_since(removing))

    try:
        run = trio.run(main)
    except ExecutorError as exc:
        raise BenchError(f"DockerExecutor.run of {spec.image} failed: {exc}") from None
    out = (results / "stdout").read_bytes()
    if out.decode("utf-8", "replace") != EXPECTED_STDOUT:
        raise BenchError(f"DockerExecutor.run printed {out[:200]!r}, not {EXPECTED_STDOUT!r}")
    return run


def measure_executor(*, rounds: int, image: str, network: bool) -> tuple[ExecutorSamples, str]:
    """One warm-up round, then ``rounds`` rounds of the three ways in a fresh random
    order each. Returns the samples and the label every container carried."""
    import docker
    import docker.errors

    label = f"{NATIVE_LABEL}={uuid.uuid4().hex[:12]}"
    spec = JobSpec(image=image, command=COMMAND, network=network)
    samples = ExecutorSamples()
    rng = random.Random()
    try:
        sdk = docker.from_env()
    except docker.errors.DockerException as exc:
        raise BenchError(f"Docker is not usable: {exc}") from None
    try:
        # containers.run and `docker run` would pull a missing image: no registry is assumed.
        sdk.images.get(image)
    except docker.errors.DockerException as exc:
        sdk.close()
        raise BenchError(f"image {image!r} is not usable here (not local?): {exc}") from None
    executor = DockerExecutor()
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        try:
            for round_ in range(-1, rounds):
                ways: dict[str, Callable[[], Any]] = {
                    "executor": lambda: run_executor(executor, spec, label, Path(tmp)),
                    "sdk": lambda: run_docker_sdk(sdk, image, label),
                    "cli": lambda: run_docker_cli(image, label),
                }
                order = list(ways)
                rng.shuffle(order)
                got = {way: ways[way]() for way in order}
                run: ExecutorRun = got["executor"]
                say(
                    f"{'warm-up' if round_ < 0 else f'round {round_ + 1}/{rounds}'}:"
                    f" executor {run.wall_ms:.0f} ms (+{run.removal_ms:.0f} removing after),"
                    f" SDK {got['sdk']:.0f}, docker CLI {got['cli']:.0f}"
                )
                if round_ < 0:
                    continue
                samples.runs["executor"].append(run.wall_ms)
                samples.runs["sdk"].append(got["sdk"])
                samples.runs["cli"].append(got["cli"])
                samples.removal.append(run.removal_ms)
                for phase, ms in run.phases_ms.items():
                    samples.phases.setdefault(phase, []).append(ms)
        finally:
            # Its runs already removed their containers (or queued the removal this
            # waits for); the label catches what an interrupted SDK or CLI run left.
            trio.run(executor.aclose)
            if remove_labelled(sdk, label):
                say("removed containers an interrupted run left")
            sdk.close()
    return samples, label


def executor_result(
    samples: ExecutorSamples, *, image: str, network: bool, label: str
) -> dict[str, Any]:
    """The executor bench's JSON object."""
    runs = samples.runs
    return {
        "bench": "executor",
        "rounds": len(runs["executor"]),
        "warmup": 1,
        "image": image,
        "command": COMMAND,
        "executor_network": network,
        "executor_ms": summarize(runs["executor"]),
        "docker_sdk_ms": summarize(runs["sdk"]),
        "docker_cli_ms": summarize(runs["cli"]),
        "executor_vs_sdk_ms": difference(runs["executor"], runs["sdk"]),
        "executor_vs_cli_ms": difference(runs["executor"], runs["cli"]),
        "phases_ms": {
            phase: round(percentile(values, 50), 1)
            for phase, values in samples.phases.items()
            if values
        },
        "deferred_removal_ms": summarize(samples.removal),
        "label": label,
        "samples_ms": {way: [round(v, 1) for v in values] for way, values in runs.items()},
    }


def executor_text(r: dict[str, Any]) -> str:
    """The executor result as a table for people."""
    cmd = " ".join(r["command"])
    network = "bridge network" if r["executor_network"] else "no network"
    table = format_table(
        f"`{r['image']} {cmd}`, ms: {r['rounds']} rounds (+{r['warmup']} warm-up),"
        f" interleaved in random order",
        [
            (f"DockerExecutor.run ({network})", r["executor_ms"]),
            ("docker SDK containers.run", r["docker_sdk_ms"]),
            ("docker run --rm (CLI)", r["docker_cli_ms"]),
            ("executor - SDK", r["executor_vs_sdk_ms"]),
            ("executor - CLI", r["executor_vs_cli_ms"]),
            ("deferred removal (after run)", r["deferred_removal_ms"]),
        ],
    )
    phases = inline(r["phases_ms"])
    return f"{table}\n\nmedian ms per executor phase: {phases}"


def run(args: argparse.Namespace) -> int:
    """``devstack bench executor``."""
    load = os.getloadavg()[0]
    samples, label = measure_executor(rounds=args.rounds, image=args.image, network=args.network)
    result = executor_result(samples, image=args.image, network=args.network, label=label)
    report(result, args.json, executor_text, load)
    return 0
