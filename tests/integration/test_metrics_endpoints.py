"""Node metrics on a real devstack: ``GET /metrics`` (Prometheus text) and
``GET /api/v1/stats`` (JSON) parse, carry every documented figure, and move when
jobs run; ``GET /api/v1/logs`` tails and follows a node's own log file. Every wait
is a poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from devstack.client import NodeClient
from devstack.jobs import TERMINAL
from node.api import MAX_LOG_LINES
from node.metrics import PHASES
from tests.conftest import Devstack, describe_job, get_json, wait_job_end, wait_until

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 120.0
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
STATS_KEYS = {
    "node", "at", "sampled_at", "process", "containers", "gossip", "direct", "bids", "jobs",
    "latency", "output", "lock_warn_ms", "locks", "stalls",
}  # fmt: skip


def scrape(api: str) -> Series:
    """``GET /metrics`` parsed by prometheus-client: (sample name, labels) -> value."""
    response = httpx.get(f"{api}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = [s for f in text_string_to_metric_families(response.text) for s in f.samples]
    series = {(s.name, frozenset(s.labels.items())): s.value for s in samples}
    assert len(series) == len(samples), "a series appears twice"
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def submit(api: str, spec: dict[str, Any]) -> str:
    response = httpx.post(f"{api}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.timeout(600)  # includes bringing the cluster up on a loaded machine
def test_figures_move_when_a_job_runs(cluster5: Devstack) -> None:
    requester = cluster5.api(0)
    before = {api: scrape(api) for api in cluster5.apis}
    job_id = submit(requester, {"engine": "noop", "command": ["echo", "x"]})
    final = wait_job_end(requester, job_id, JOB_TIMEOUT_S)
    assert final["job"]["state"] == "completed", final["job"]

    # The job's end is stored just before the requester counts it: poll.
    completed = value(before[requester], "bacalhau_jobs_completed_total") + 1
    after = wait_until(
        lambda: (
            (s := scrape(requester))["bacalhau_jobs_completed_total", frozenset()] == completed
            and s
        ),
        timeout=30,
        message="the requester to count the job completed",
    )
    old = before[requester]
    assert value(after, "bacalhau_bids_received_total") > value(old, "bacalhau_bids_received_total")
    assert value(after, "bacalhau_jobs_failed_total") == value(old, "bacalhau_jobs_failed_total")
    # Offered, not gossiped: direct messages only, counted by kind too.
    out = "bacalhau_direct_messages_total"
    assert value(after, out, direction="out") > value(old, out, direction="out")
    gossip = "bacalhau_gossip_messages_total"
    assert value(after, gossip, direction="out") == value(old, gossip, direction="out")
    offered = (
        "bacalhau_messages_total",
        frozenset({("channel", "direct"), ("direction", "out"), ("kind", "JobOffered")}),
    )
    assert after[offered] > old.get(offered, 0.0)
    for phase in PHASES:  # a noop job goes through every phase
        count = "bacalhau_job_phase_seconds_count"
        assert value(after, count, phase=phase) > value(old, count, phase=phase), phase
        p50 = value(after, "bacalhau_job_phase_seconds", phase=phase, quantile="0.5")
        assert not math.isnan(p50) and p50 >= 0, (phase, p50)
    total = value(after, "bacalhau_job_phase_seconds", phase="total", quantile="0.99")
    assert 0 < total < JOB_TIMEOUT_S
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_open_fds") > 0

    sent_before = sum(value(s, "bacalhau_bids_sent_total") for s in before.values())
    sent_after = sum(value(scrape(api), "bacalhau_bids_sent_total") for api in cluster5.apis)
    assert sent_after > sent_before

    stats = get_json(f"{requester}/api/v1/stats")
    assert set(stats) == STATS_KEYS
    assert stats["jobs"]["completed"] == completed
    assert stats["latency"]["total"]["count"] >= 1
    assert stats["process"]["rss_bytes"] > 0 and stats["process"]["threads"] > 1
    assert stats["gossip"]["peers"] >= 1 and stats["direct"]["out"] >= 3
    assert stats["direct"]["by_kind"]["direct.out.JobOffered"] >= 1, stats["direct"]
    # What the direct messages cost in streams (none if the job ran on its requester).
    assert {"requests", "opened", "dialled"} <= set(stats["direct"]["streams"]), stats["direct"]
    assert {"total", "by_reason"} <= set(stats["gossip"]["dropped"])
    # As Node.contention() gives them: `devstack locks` reads these.
    assert any(lock["name"] == "store.sqlite" for lock in stats["locks"])
    assert stats["stalls"]["steps"] > 0 and stats["lock_warn_ms"] > 0


@pytest.mark.timeout(300)
def test_a_running_container_shows_in_its_nodes_figures(cluster5: Devstack) -> None:
    requester = cluster5.api(0)
    job_id = submit(requester, {"image": "busybox:latest", "command": ["sleep", "2"]})

    def container_seen() -> tuple[str, dict[str, Any]] | None:
        for api in cluster5.apis:
            stats = get_json(f"{api}/api/v1/stats")
            if stats["containers"]["count"] >= 1 and stats["containers"]["rss_bytes"] > 0:
                return api, stats
        state = describe_job(requester, job_id)["job"]["state"]
        assert state not in TERMINAL, f"job {job_id} ended ({state}) and no node showed it"
        return None

    api, stats = wait_until(
        container_seen, timeout=JOB_TIMEOUT_S, message="a node to show the job's container"
    )
    assert stats["containers"]["processes"] >= 1, stats["containers"]
    final = wait_job_end(requester, job_id, JOB_TIMEOUT_S)
    assert final["job"]["state"] == "completed", final["job"]
    ran = {e["node"] for e in final["job"]["executions"] if e["state"] == "published"}
    assert ran == {stats["node"]}, "the container showed on a node that did not run the job"
    wait_until(
        lambda: get_json(f"{api}/api/v1/stats")["containers"]["count"] == 0,
        timeout=30,
        message="the container to leave the figures once it is gone",
    )


def logs(api: str, query: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/api/v1/logs?{query}", timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.json()


def ends_with_lines(written: bytes, lines: list[str]) -> bool:
    return written.endswith("".join(f"{line}\n" for line in lines).encode())


@pytest.mark.timeout(300)
def test_a_nodes_log_is_tailed_and_followed(cluster5: Devstack) -> None:
    assert cluster5.state is not None
    entry, api = cluster5.state.nodes[0], cluster5.api(0)
    log_file = Path(entry.log_file)

    first = logs(api, "tail=3")
    assert first["path"] == entry.log_file
    assert 1 <= len(first["lines"]) <= 3  # the node logged at least that it was ready
    # The log only grows: what the answer read is the file up to its offset.
    assert ends_with_lines(log_file.read_bytes()[: first["offset"]], first["lines"])
    assert all("ts" in json.loads(line) for line in first["lines"])  # the node's JSON lines

    # The requester logs a job that fails; ?after= gives only what came since.
    job_id = submit(api, {"image": "nosuch-logs-image:1", "command": ["true"]})
    followed = wait_until(
        lambda: (
            (answer := logs(api, f"tail={MAX_LOG_LINES}&after={first['offset']}"))
            and any(job_id in line for line in answer["lines"])
            and answer
        ),
        timeout=JOB_TIMEOUT_S,
        message=f"node 0's log to mention job {job_id}",
    )
    since = log_file.read_bytes()[first["offset"] : followed["offset"]]
    assert since.decode().splitlines() == followed["lines"]

    # An offset past the end (the file was rotated): from its start again.
    again = logs(api, f"tail=1&after={10**15}")
    assert len(again["lines"]) == 1
    assert ends_with_lines(log_file.read_bytes()[: again["offset"]], again["lines"])

    for query, field in (
        ("tail=0", "tail"),
        (f"tail={MAX_LOG_LINES + 1}", "tail"),
        ("tail=many", "tail"),
        ("after=-1", "after"),
    ):
        response = httpx.get(f"{api}/api/v1/logs?{query}", timeout=10)
        assert response.status_code == 400, (query, response.text)
        body = response.json()
        assert (body["error"], body["field"]) == ("bad_parameter", field), body


def test_a_nodes_log_is_streamed_as_it_is_written(cluster5: Devstack) -> None:
    """``?follow=true`` streams the tail, then each line as the node writes it:
    through the client, and through ``devstack logs NODE --follow``."""
    api = cluster5.api(1)
    seen: queue.Queue[str] = queue.Queue()
    wanted: list[str] = []  # the job whose line ends the reading, once submitted

    def read() -> None:
        with NodeClient(api) as client:
            for line in client.follow_logs(tail=1):
                seen.put(line)
                if wanted and wanted[0] in line:
                    return  # leaving the stream closes it

    reader = threading.Thread(target=read, name="follow the log", daemon=True)
    reader.start()
    assert json.loads(seen.get(timeout=30))["ts"] > 0  # the tail comes first
    job_id = submit(api, {"image": "nosuch-follow-image:1", "command": ["true"]})
    wanted.append(job_id)
    wait_until(
        lambda: any(job_id in line for line in drain(seen)),
        timeout=JOB_TIMEOUT_S,
        message=f"a streamed line naming job {job_id}",
    )
    reader.join(timeout=30)
    assert not reader.is_alive()

    argv = ["--state-dir", str(cluster5.state_dir), "logs", "node-1", "--follow", "-n", "2"]
    cli = subprocess.Popen(
        [sys.executable, "-m", "devstack.cli", *argv], stdout=subprocess.PIPE, text=True
    )
    try:
        assert cli.stdout is not None
        first = cli.stdout.readline()  # the node has logged: its tail comes at once
        assert json.loads(first)["ts"] > 0, first
    finally:
        cli.kill()  # a process this test started
        cli.wait(timeout=30)

    usage = cluster5.run("logs", "--follow")
    assert usage.returncode == 2 and "follows one node" in usage.stderr, usage.stderr


def drain(lines: queue.Queue[str]) -> list[str]:
    """Every line the queue holds now (what a stream delivered so far)."""
    taken = []
    while True:
        try:
            taken.append(lines.get_nowait())
        except queue.Empty:
            return taken
