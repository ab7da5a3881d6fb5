"""Bad actors that do not collude (``devstack up --bad-actors 2 --no-collude``), on a
real devstack of 4 nodes: each forges its own way, so no two forged results agree.

Every job of concurrency 3 runs on at least one of them. With one among its nodes
the two honest results outvote it at no extra cost: no re-run. With both, the
three results all differ, and the job ends ``error`` (no fresh nodes are left for a
re-run). No forged result is ever published.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devstack.client import NodeClient
from tests.conftest import Devstack, get_json, running_devstack, wait_job_end

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 120.0
MAX_JOBS = 30  # each job has one bad actor with probability 1/2: both cases come soon


@pytest.fixture(scope="module")
def lone_forgers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    stack = Devstack(
        state_dir=tmp_path_factory.mktemp("forgery"),
        nodes=4,
        up_args=("--bad-actors", "2", "--no-collude"),
    )
    with running_devstack(stack.state_dir, stack.nodes, stack) as running:
        yield running


def runs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["node"]: e for e in answer["job"]["executions"] if e["state"] != "rejected"}


@pytest.mark.timeout(600)
def test_lone_forgers_are_outvoted_without_a_rerun_and_never_published(
    lone_forgers: Devstack,
) -> None:
    assert lone_forgers.state is not None
    bad = {n.peer_id for n in lone_forgers.state.nodes if n.bad_actor}
    assert len(bad) == 2
    for node in lone_forgers.state.nodes:
        forgery = get_json(f"{node.api}/api/v1/node")["forgery"]
        assert forgery == ({"collude": False, "rate": 1.0} if node.peer_id in bad else None)
    spec = {
        "engine": "noop",
        "command": ["echo", "honest"],
        "verifier": "deterministic",
        "deal": {"concurrency": 3},
    }
    api = lone_forgers.api(0)
    seen: set[int] = set()  # how many bad actors ran a job, over the jobs so far
    for _ in range(MAX_JOBS):
        with NodeClient(api) as client:
            job_id = client.submit(spec)["id"]
        answer = wait_job_end(api, job_id, JOB_TIMEOUT_S)
        ran = runs(answer)
        forgers = len(bad & ran.keys())
        kinds = [e["kind"] for e in answer["events"]]
        assert "rerun" not in kinds or forgers == 2, kinds
        published = [run for run in ran.values() if run["state"] == "published"]
        assert not any(run["node"] in bad for run in published), published
        if forgers == 1:
            assert answer["job"]["state"] == "completed", answer["job"]["reason"]
            assert len(published) == 2 and "rerun" not in kinds
            [preview] = {run["stdout_preview"] for run in published}
            assert "honest" in preview and "forged" not in preview
        else:
            assert forgers == 2, ran
            assert answer["job"]["state"] == "error"
            assert "3 proposals, 3 different results" in answer["job"]["reason"]
        seen.add(forgers)
        if seen == {1, 2}:
            break
    assert seen == {1, 2}, f"in {MAX_JOBS} jobs the forgers ran {seen} at a time"


def test_a_restarted_lone_forger_still_forges_alone(lone_forgers: Devstack) -> None:
    assert lone_forgers.state is not None
    forger = next(n for n in lone_forgers.state.nodes if n.bad_actor)
    restarted = lone_forgers.restart(forger)
    assert get_json(f"{restarted.api}/api/v1/node")["forgery"] == {"collude": False, "rate": 1.0}
