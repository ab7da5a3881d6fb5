"""A job's live output on a real devstack (README, live output): lines travel from
the containers over the nodes' warm streams to the requester while the job runs,
``GET /api/v1/jobs/{id}/logs`` streams them from any node, ``devstack logs JOB -f``
prints them, a job of several nodes has each node's lines labelled, and a job
flooding its stdout keeps every node's memory bounded and says how many lines it
lost. Every wait is a poll with a deadline or a blocking read with a timeout.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.client import NodeClient
from devstack.client.calls import Call
from devstack.jobs import TERMINAL
from node.output import EXECUTION_KEEP_CHARS
from tests.conftest import REPO, Devstack, describe_job, running_devstack, wait_job_end

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    with running_devstack(tmp_path_factory.mktemp("output"), 3) as found:
        yield found


def submit(api: str, command: str, concurrency: int = 1, timeout: float = 120) -> str:
    with NodeClient(api) as client:
        answer = client.submit(
            {
                "image": "busybox:latest",
                "command": ["sh", "-c", command],
                "deal": {"concurrency": concurrency},
                "timeout": timeout,
            }
        )
    return answer["id"]


def state_of(api: str, job_id: str) -> str:
    return describe_job(api, job_id)["job"]["state"]


@pytest.mark.timeout(600)
def test_devstack_logs_follows_a_job_and_its_first_line_comes_before_it_ends(
    stack: Devstack,
) -> None:
    api = stack.api(0)
    job_id = submit(api, "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done")
    argv = [sys.executable, "-m", "devstack.cli", "--state-dir", str(stack.state_dir)]
    follow = subprocess.Popen(
        [*argv, "logs", job_id, "-f"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, name="devstack logs -f", daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=JOB_TIMEOUT_S)
        state_at_first = state_of(api, job_id)
        assert first == "tick 1"
        assert state_at_first not in TERMINAL, "the first line came only once the job ended"
        rest: list[str] = []
        while (line := lines.get(timeout=JOB_TIMEOUT_S)) is not None:
            rest.append(line)
        assert follow.wait(timeout=60) == 0, follow.stderr.read() if follow.stderr else ""
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=30)
    # The stream ends with the job, every line in order, once.
    assert rest == [f"tick {i}" for i in range(2, 9)]
    assert state_of(api, job_id) == "completed"


@pytest.mark.timeout(600)
def test_a_job_on_three_nodes_has_each_nodes_lines_labelled(stack: Devstack) -> None:
    assert stack.state is not None
    api = stack.api(0)
    job_id = submit(
        api, "for i in 1 2 3; do echo line $i; echo oops $i >&2; sleep 0.5; done", concurrency=3
    )
    record = wait_job_end(api, job_id, JOB_TIMEOUT_S)
    assert record["job"]["state"] == "completed", record["job"]
    runners = {e["node"] for e in record["job"]["executions"] if e["state"] == "published"}
    assert len(runners) == 3

    # Any node answers: the requester itself, or another that relays it.
    for index in range(3):
        with NodeClient(stack.api(index)) as client:
            records = list(client.job_output(job_id))
        assert records[-1] == {"state": "completed", "ended": True}
        by_node: dict[str, list[tuple[str, str]]] = {}
        for found in records[:-1]:
            by_node.setdefault(found["node"], []).append((found["stream"], found["line"]))
        assert set(by_node) == runners
        for seen in by_node.values():
            assert [line for stream, line in seen if stream == "stdout"] == [
                "line 1",
                "line 2",
                "line 3",
            ]
            assert [line for stream, line in seen if stream == "stderr"] == [
                "oops 1",
                "oops 2",
                "oops 3",
            ]

    names = {n.peer_id: n.name for n in stack.state.nodes}
    printed = stack.run("logs", job_id, check=True)
    labelled: dict[str, list[str]] = {}
    for line in printed.stdout.splitlines():
        name, _, text = line.partition(" | ")
        labelled.setdefault(name, []).append(text)
    assert labelled == {names[n]: ["line 1", "line 2", "line 3"] for n in runners}
    assert sorted(printed.stderr.splitlines()) == sorted(
        f"{names[n]} | oops {i}" for n in runners for i in (1, 2, 3)
    )

    # Narrowed: one node's stderr only.
    one = sorted(runners)[0]
    narrow = stack.run("logs", job_id, "--stderr", "--node", names[one], check=True)
    assert narrow.stderr.splitlines() == ["oops 1", "oops 2", "oops 3"]
    assert narrow.stdout == ""


def _stats(api: str) -> dict[str, Any]:
    with NodeClient(api) as client:
        return client.stats()


@pytest.mark.timeout(600)
def test_a_flood_of_output_keeps_memory_bounded_and_reports_lost_lines(stack: Devstack) -> None:
    """About 150 MB of stdout in 2 million lines: the nodes keep bounded buffers
    and say how many lines never reached the requester."""
    api = stack.api(1)
    before = {index: _stats(stack.api(index))["process"]["rss_bytes"] for index in range(3)}
    job_id = submit(
        api,
        "yes 'a line of flood, seventy bytes or so, again and again.' | head -n 2500000; echo done",
    )
    followed: list[dict[str, Any]] = []
    with NodeClient(api) as client:
        for found in client.job_output(job_id, follow=True):
            followed.append(found)
            if "ended" in found:
                break
    assert followed[-1] == {"state": "completed", "ended": True}
    lost = sum(found.get("dropped", 0) for found in followed)
    lines = [found for found in followed if "line" in found]
    assert lost > 0
    assert lines[-1]["line"] == "done"
    # Every line of the run is either streamed or counted as lost.
    assert lost + len(lines) == 2_500_001

    after = {index: _stats(stack.api(index)) for index in range(3)}
    requester_output = after[1]["output"]
    assert requester_output["kept_chars"] <= EXECUTION_KEEP_CHARS * requester_output["jobs"]
    for index, figures in after.items():
        grown = figures["process"]["rss_bytes"] - before[index]
        assert grown < 60 * 2**20, f"node {index} grew by {grown / 2**20:.0f} MiB"

    printed = stack.run("logs", job_id, check=True)
    assert "line(s) lost" in printed.stderr
    assert printed.stdout.splitlines()[-1] == "done"
    assert state_of(api, job_id) == "completed"


@pytest.mark.timeout(300)
def test_bad_requests_for_a_jobs_output_name_what_is_wrong(stack: Devstack) -> None:
    api = stack.api(2)
    job_id = submit(api, "echo hi")
    wait_job_end(api, job_id, JOB_TIMEOUT_S)
    with NodeClient(api) as client:
        for name, value, field in (
            ("shard", "1", "shard"),
            ("shard", "x", "shard"),
            ("stream", "stdin", "stream"),
            ("follow", "maybe", "follow"),
        ):
            path = f"/api/v1/jobs/{job_id}/logs"
            status, body = client.send(Call("GET", path, {name: value}))
            assert status == 400, body
            assert json.loads(body)["field"] == field
        status, body = client.send(Call("GET", "/api/v1/jobs/no-such-job/logs"))
        assert status == 404 and json.loads(body)["field"] == "job_id"
        records = list(client.job_output(job_id))
    assert [(r.get("stream"), r.get("line")) for r in records] == [("stdout", "hi"), (None, None)]
    assert records[-1] == {"state": "completed", "ended": True}
