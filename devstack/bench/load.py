"""``devstack bench load``: bursts of jobs, what they cost, and where the nodes waited.

Submits ``--jobs`` jobs (noop by default, so the nodes and not Docker are what is
measured) at ``--rate`` per second to random requesters and waits for every one
to end (:mod:`devstack.bench.burst`). Reported: jobs completed and failed, the rate the
cluster sustained, job latency (created to ended, by the requester's clock), the
CPU the node processes burned per job, the messages each job cost by kind and
how many opened a stream or dialled, and what the load did to the nodes' locks
and event loops (``devstack locks`` before the burst subtracted from after it).

``--rates 20,40,80,160`` steps the rate up on the same cluster, ``--jobs`` jobs a
step, until a step fails a job; the highest rate held (no failure, and sustained) is
reported. With ``--engine docker`` and no rate given, the bench first measures
how many ``containers.run`` a second this Docker daemon sustains with parallel
SDK clients, then offers the cluster that rate.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from typing import Any

from devstack import locks
from devstack.bench.burst import BurstError, run_burst
from devstack.bench.harness import BenchCluster, BenchError, bench_cluster, report, say, settle
from devstack.bench.native import NATIVE_LABEL, remove_labelled
from devstack.bench.workload import noop_spec
from devstack.client import NodeClient
from devstack.cluster import node_containers
from node.models import Deal, JobSpec

DOCKER_SECONDS = 15.0
HELD_SHARE = 0.975  # of the offered rate, sustained, for a step to count as held
# After the load, how long the nodes get to let go of everything (a bid rejected
# late holds its slot until its answer is overdue).
AFTER_TIMEOUT_S = 60.0


def _lock_rows(found: locks.ClusterContention, top: int) -> list[dict[str, Any]]:
    return [
        {
            "lock": m.name,
            "contended": m.contended,
            "acquisitions": m.acquisitions,
            "wait_ms": round(m.total_wait_ns / 1e6, 1),
            "max_wait_ms": round(m.max_wait_ns / 1e6, 1),
            "max_hold_ms": round(m.max_hold_ns / 1e6, 1),
            "top_waiter": m.waiters.most_common(1)[0][0] if m.waiters else None,
        }
        for m in found.locks[:top]
        if m.contended
    ]


def measure_load(
    cluster: Any, jobs: int, spec: JobSpec, rate: float, top: int
) -> tuple[dict[str, Any], locks.ClusterContention]:
    """One burst; its figures, and the cluster's contention during it."""
    before = locks.collect(cluster.state, [])
    say(f"submitting {jobs} {spec.engine} jobs at {rate:g}/s")
    try:
        burst = run_burst(cluster.state, jobs, spec, rate)
    except BurstError as exc:
        raise BenchError(str(exc)) from None
    during = locks.since(locks.collect(cluster.state, []), before)
    stalls = during.stalls
    result = {
        **burst.figures(jobs, rate),
        "lock_contended": sum(m.contended for m in during.locks),
        "lock_wait_ms": round(sum(m.total_wait_ns for m in during.locks) / 1e6, 1),
        "locks": _lock_rows(during, top),
        "loop_steps": stalls.steps,
        "stalls": stalls.stalls,
        "stall_ms": round(stalls.stall_ms_total, 1),
        "stall_cpu_ms": round(stalls.stall_cpu_ms_total, 1),
        "cpu_stalls": stalls.cpu_stalls,
        "sched_delay_mean_ms": round(stalls.sched_delay_mean_ms, 3),
        "stalls_by_task": {
            t.name: {"stalls": t.stalls, "ms": round(t.total_ms, 1), "cpu_ms": round(t.cpu_ms, 1)}
            for t in sorted(stalls.tasks.values(), key=lambda t: -t.total_ms)[:top]
        },
    }
    return result, during


def after_load(cluster: BenchCluster, timeout: float = AFTER_TIMEOUT_S) -> dict[str, Any]:
    """What the load left behind, summed over the nodes: jobs still open, job tasks
    still running (``tasks.live``) and containers of the cluster's nodes (None
    without Docker). Polled until all are 0, or what is left after ``timeout``."""
    deadline = time.monotonic() + timeout
    peers = [n.peer_id for n in cluster.state.nodes]
    while True:
        open_jobs = tasks = 0
        for node in cluster.state.nodes:
            with NodeClient(node.api) as client:
                info = client.info()
            open_jobs += info["requester"]["open_jobs"]
            tasks += info["tasks"]["live"]
        containers = node_containers(peers)
        left = {
            "open_jobs": open_jobs,
            "job_tasks": tasks,
            "containers": None if containers is None else len(containers),
        }
        if not (open_jobs or tasks or containers) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def docker_throughput(image: str, parallel: list[int], seconds: float) -> dict[str, Any]:
    """``containers.run(image, echo hi, remove=True)`` per second, with each number of
    parallel SDK clients in ``parallel`` for ``seconds``; the best of them."""
    import docker

    label = f"{NATIVE_LABEL}={uuid.uuid4().hex[:12]}"
    rates: dict[str, float] = {}
    errors: list[str] = []
    try:
        for clients in parallel:
            say(f"docker alone: {clients} parallel SDK client(s) for {seconds:g}s")
            runs = [0] * clients
            start = time.monotonic()
            threads = [
                threading.Thread(
                    target=_run_containers,
                    args=(image, label, start + seconds, runs, i, errors),
                )
                for i in range(clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rates[str(clients)] = round(sum(runs) / (time.monotonic() - start), 2)
    finally:
        client = docker.from_env(timeout=60)
        remove_labelled(client, label)
        client.close()
    best = max(rates.values(), default=0.0)
    return {"runs_per_s_by_clients": rates, "runs_per_s": best, "errors": errors[:5]}


def _run_containers(
    image: str, label: str, stop: float, runs: list[int], slot: int, errors: list[str]
) -> None:
    """Run ``echo hi`` containers one after another until ``stop``, counting in
    ``runs[slot]`` (a thread of :func:`docker_throughput`)."""
    import docker
    import docker.errors

    key, _, value = label.partition("=")
    client = docker.from_env(timeout=120)
    try:
        while time.monotonic() < stop:
            try:
                client.containers.run(image, ["echo", "hi"], remove=True, labels={key: value})
            except docker.errors.DockerException as exc:
                errors.append(str(exc)[:200])
                continue
            runs[slot] += 1
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    """``devstack bench load``."""
    load = os.getloadavg()[0]
    if args.engine == "docker":
        deal = Deal(concurrency=args.concurrency)
        spec = JobSpec(engine="docker", image=args.image, command=["echo", "hi"], deal=deal)
    else:
        spec = noop_spec(args.concurrency)
    docker_alone = None
    rates = args.rates or ([args.rate] if args.rate else [])
    if not rates:
        if args.engine != "docker":
            rates = [10.0]
        else:
            docker_alone = docker_throughput(args.image, args.docker_clients, DOCKER_SECONDS)
            if not docker_alone["runs_per_s"]:
                raise BenchError(f"Docker ran no container: {docker_alone['errors']}")
            rates = [docker_alone["runs_per_s"]]
    reuse = args.state_dir if args.reuse else None
    steps: list[dict[str, Any]] = []
    with bench_cluster(args.nodes, reuse, dispatch=args.dispatch, hosts=args.hosts) as cluster:
        if cluster.temporary:
            settle(args.settle)
        for rate in rates:
            result, during = measure_load(cluster, args.jobs, spec, rate, args.top)
            result["contention"] = locks.format_contention(during, args.top)
            steps.append(result)
            say(_step_line(result))
            if result["failed"]:
                break
        left = after_load(cluster)
        nodes = len(cluster.state.nodes)
        dispatch = cluster.state.dispatch
    # Held: no job failed and the cluster kept up (a queue growing behind a rate it
    # cannot sustain fails no job at first, but it does not hold that rate).
    held = [
        s["rate"]
        for s in steps
        if not s["failed"] and (s["sustained_jobs_per_s"] or 0) >= HELD_SHARE * s["rate"]
    ]
    result = {
        "bench": "load",
        "nodes": nodes,
        "engine": args.engine,
        "concurrency": args.concurrency,
        "dispatch": dispatch,
        "steps": steps,
        "highest_rate_held": max(held) if held else None,
        "most_sustained": max((s["sustained_jobs_per_s"] or 0 for s in steps), default=None),
        "docker_alone": docker_alone,
        "left_after": left,
        **cluster.describe(),
    }
    if docker_alone and steps and steps[0]["sustained_jobs_per_s"]:
        result["share_of_docker_rate"] = round(
            steps[0]["sustained_jobs_per_s"] / docker_alone["runs_per_s"], 3
        )

    def text(r: dict[str, Any]) -> str:
        lines = [
            f"{r['engine']} jobs (c={r['concurrency']}) on {r['nodes']} nodes,"
            f" dispatch {r['dispatch']}"
        ]
        if r["docker_alone"]:
            alone = r["docker_alone"]
            lines.append(
                f"docker alone (containers.run per second by parallel clients):"
                f" {alone['runs_per_s_by_clients']}; best {alone['runs_per_s']}"
            )
        for step in r["steps"]:
            lines += ["", _step_text(step)]
        if len(r["steps"]) > 1 or r["highest_rate_held"] is None:
            lines.append(
                f"\nhighest rate held (no failure, {HELD_SHARE:.1%} of it sustained):"
                f" {r['highest_rate_held']}; most sustained: {r['most_sustained']} jobs/s"
            )
        left = r["left_after"]
        lines.append(
            f"left after the load: {left['open_jobs']} open jobs, {left['job_tasks']} job"
            f" tasks, {left['containers']} containers"
        )
        if "share_of_docker_rate" in r:
            lines.append(f"cluster / docker alone: {r['share_of_docker_rate']:.1%}")
        lines += ["", "during the last burst:", r["steps"][-1]["contention"]]
        return "\n".join(lines)

    report(result, args.json, text, load)
    return 0


def _step_line(r: dict[str, Any]) -> str:
    return (
        f"{r['rate']:g}/s: {r['completed']} completed, {r['failed']} failed,"
        f" sustained {r['sustained_jobs_per_s']}/s, p99 {r['latency_p99_ms']} ms,"
        f" {r['node_cpu_ms_per_job']} ms CPU/job, {r['messages_per_job']} messages/job"
    )


def _step_text(r: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v:g}" for k, v in r["messages_per_job_by_kind"].items())
    lines = [
        f"{r['jobs']} jobs at {r['rate']:g}/s (submitted at {r['submit_rate']:g}/s):"
        f" {r['completed']} completed, {r['failed']} failed; sustained"
        f" {r['sustained_jobs_per_s']} jobs/s; all ended {r['wall_s']:g}s after the first",
        f"latency p50 / p95 / p99 / max (ms): {r['latency_p50_ms']} / {r['latency_p95_ms']}"
        f" / {r['latency_p99_ms']} / {r['latency_max_ms']}",
        f"node CPU: {r['node_cpu_s']:g} s in all, {r['node_cpu_ms_per_job']:g} ms per job",
        f"messages per job: {r['messages_per_job']} ({kinds});"
        f" gossip deliveries per job {r['gossip_deliveries_per_job']}",
        f"direct requests that opened a stream: {r['opened_stream_share']},"
        f" that dialled: {r['dialled_share']}",
    ]
    lines += [f"FAILED: {f}" for f in r["failures"]]
    return "\n".join(lines)
