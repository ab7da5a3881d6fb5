"""``devstack bench overhead``: the cluster's latency against a native ``docker run``.

Submit-to-completed latency of `busybox echo hello` through the cluster (concurrency
1, requester rotating over the nodes) against the same container run with the
Docker CLI and SDK, interleaved in random order.

The cluster is timed twice: by the client (POST until the requester's describe says
``completed``) and by the requester's own event timestamps (``completed.at -
created.at``), which also show where the time goes (``phases_ms``; ``compute:*``
phases are the requester's own compute steps when it ran the job itself). A cluster
job that fails is recorded (``failures``) and the bench goes on. ``--beside N``
measures a second, fresh cluster of N nodes in the same rounds, so the two sizes
compare without the machine's drift between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack import state as st
from devstack.bench.harness import (
    BenchCluster,
    BenchError,
    bench_cluster,
    difference,
    format_table,
    inline,
    ms_since,
    report,
    say,
    summarize,
)
from devstack.bench.native import (
    COMMAND,
    EXPECTED_STDOUT,
    JOB_TIMEOUT_S,
    NATIVE_LABEL,
    remove_labelled,
    run_docker_cli,
    run_docker_sdk,
)
from devstack.client import NodeClient
from devstack.jobs import TERMINAL
from node.models import JobSpec
from profiles.quantiles import percentile


class JobFailed(BenchError):
    """A cluster job ended other than ``completed``: a result the bench records, not an abort."""


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


def run_cluster_job(api: str, spec: JobSpec) -> ClusterRun:
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

    spec = JobSpec(engine="docker", image=image, command=COMMAND)
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


def run(args: argparse.Namespace) -> int:
    """``devstack bench overhead``."""
    load = os.getloadavg()[0]
    reuse = args.state_dir if args.reuse else None
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            bench_cluster(args.nodes, reuse, dispatch=args.dispatch, hosts=args.hosts)
        )
        beside = None
        if args.beside:
            beside = stack.enter_context(
                bench_cluster(args.beside, dispatch=args.dispatch, hosts=args.hosts)
            )
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
