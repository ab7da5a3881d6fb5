"""Inputs, sharding and results by CID on a real 5-node devstack (README, executors; publishing).

A directory of 20 text files is added to node 0 (`submit --input-dir`); a job
sharded by `--sharding-glob-pattern '/inputs/*.txt' --sharding-batch-size 4` runs
5 shards that bid and run independently, and `devstack get` fetches each shard's
published tree by CID over bitswap through a node that does not hold it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.content import add_bytes
from tests.conftest import Devstack, describe_failure, describe_job, wait_job_end

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 240.0
FILES = 20
BATCH = 4


def word_files(root: Path) -> dict[str, int]:
    """Write FILES text files under ``root``; each file's name and word count."""
    root.mkdir()
    counts = {}
    for i in range(FILES):
        name = f"doc{i:02d}.txt"
        words = " ".join(f"w{j}" for j in range(i + 1))
        (root / name).write_text(f"{words}\n")
        counts[name] = i + 1
    (root / "README.md").write_text("not matched by the glob\n")
    return counts


def submit(cluster: Devstack, *args: str) -> str:
    result = cluster.run("submit", "--id-only", *args, timeout=120)
    assert result.returncode == 0, describe_failure(result)
    return result.stdout.strip()


def completed(cluster: Devstack, job_id: str) -> dict[str, Any]:
    answer = wait_job_end(cluster.api(0), job_id, JOB_TIMEOUT_S)
    assert answer["job"]["state"] == "completed", answer["job"]["reason"]
    return answer


@pytest.mark.timeout(600)
def test_a_sharded_job_runs_its_shards_on_several_nodes_and_get_writes_them_all(
    cluster5: Devstack, tmp_path: Path
) -> None:
    counts = word_files(tmp_path / "books")
    job_id = submit(
        cluster5,
        "--input-dir", str(tmp_path / "books"),
        "--sharding-glob-pattern", "/inputs/*.txt",
        "--sharding-batch-size", str(BATCH),
        "busybox", "--", "sh", "-c", "cd /inputs && wc -w *.txt && ls -R /inputs > /outputs/seen",
    )  # fmt: skip
    answer = completed(cluster5, job_id)
    assert answer["job"]["job"]["shards"] == FILES // BATCH
    shards = answer["shards"]
    assert [s["shard"] for s in shards] == list(range(FILES // BATCH)), shards
    assert all(s["cid"] and s["cid"].startswith("bafy") for s in shards), shards
    runners = {
        e["node"] for e in answer["job"]["executions"] if e["state"] == "published"
    }  # one published run per shard (concurrency 1)
    assert len(runners) > 1, f"all {len(shards)} shards ran on one node: {runners}"

    out = tmp_path / "got"
    result = cluster5.run("get", job_id, "-o", str(out), timeout=300)
    assert result.returncode == 0, describe_failure(result)
    paths = [Path(p) for p in result.stdout.split()]
    assert paths == [out / f"shard-{k}" for k in range(FILES // BATCH)], result.stdout

    names = sorted(counts)
    for k, path in enumerate(paths):
        mine = names[k * BATCH : (k + 1) * BATCH]  # shards take the matches in path order
        lines = (path / "stdout").read_text().splitlines()
        got = {line.split()[1]: int(line.split()[0]) for line in lines if "total" not in line}
        assert got == {name: counts[name] for name in mine}, (k, lines)
        # Only this shard's files were mounted: not the others, not README.md.
        seen = (path / "outputs" / "seen").read_text().split()
        assert sorted(n for n in seen if n.endswith((".txt", ".md"))) == mine, seen
        assert (path / "exitCode").read_text().strip() == "0"

    # describe --json names each shard's CID; the text form lists them too.
    described = json.loads(cluster5.run("describe", job_id, "--json", check=True).stdout)
    assert [s["cid"] for s in described["shards"]] == [s["cid"] for s in shards]
    text = cluster5.run("describe", job_id, check=True).stdout
    assert all(s["cid"] in text for s in shards), text


@pytest.mark.timeout(600)
def test_get_fetches_over_bitswap_through_a_node_that_does_not_hold_the_result(
    cluster5: Devstack, tmp_path: Path
) -> None:
    """The published CID is the verified hash, and another node can fetch it by CID."""
    job_id = submit(
        cluster5, "--verifier", "deterministic", "--concurrency", "2",
        "busybox", "--", "sh", "-c", "echo published; seq 1 50000 > /outputs/numbers",
    )  # fmt: skip
    answer = completed(cluster5, job_id)
    (shard,) = answer["shards"]
    proposals = {
        e["detail"]["result_id"]
        for e in answer["events"]
        if e["kind"] == "proposed" and e["node"] == answer["requester"] and "peer" in e["detail"]
    }
    assert proposals == {shard["cid"]}, (proposals, shard)
    assert shard["locations"] == [f"ipfs://{shard['cid']}"]
    assert cluster5.state is not None
    outsider = next(n for n in cluster5.state.nodes if n.peer_id not in shard["providers"])
    before = httpx.get(f"{outsider.api}/api/v1/node", timeout=10).json()["content"]

    out = tmp_path / "got"
    result = cluster5.run("get", job_id, "-o", str(out), "--node", str(outsider.index))
    assert result.returncode == 0, describe_failure(result)
    tree = out / "shard-0"
    assert (tree / "stdout").read_text() == "published\n"
    numbers = (tree / "outputs" / "numbers").read_text()
    assert numbers == "".join(f"{i}\n" for i in range(1, 50001))
    after = httpx.get(f"{outsider.api}/api/v1/node", timeout=10).json()["content"]
    assert after["blocks_fetched"] > before["blocks_fetched"], (before, after)

    # The tree the outsider now holds has the published CID: add it back and compare.
    added = cluster5.run("add", str(tree), "--node", str(outsider.index), check=True)
    assert added.stdout.strip() == shard["cid"]


@pytest.mark.timeout(600)
def test_a_jobs_results_are_the_next_jobs_inputs(cluster5: Devstack, tmp_path: Path) -> None:
    first = submit(cluster5, "busybox", "--", "sh", "-c", "echo from the first job > /outputs/a")
    cid = completed(cluster5, first)["shards"][0]["cid"]
    second = submit(
        cluster5, "-i", f"{cid}:/inputs/previous",
        "busybox", "--", "sh", "-c", "cat /inputs/previous/outputs/a; touch /inputs/x || echo ro",
    )  # fmt: skip
    answer = completed(cluster5, second)
    stdouts = {e["stdout_preview"] for e in answer["job"]["executions"] if e["stdout_preview"]}
    assert stdouts == {"from the first job\nro\n"}, stdouts


@pytest.mark.timeout(300)
def test_inputs_and_sharding_rules_are_checked_at_submit(
    cluster5: Devstack, tmp_path: Path
) -> None:
    word_files(tmp_path / "books")
    result = cluster5.run(
        "submit", "--input-dir", str(tmp_path / "books"),
        "--sharding-glob-pattern", "/inputs/*.csv", "busybox", "--", "true",
    )  # fmt: skip
    assert result.returncode == 1, describe_failure(result)
    assert "/inputs/*.csv" in result.stderr and "sharding.glob_pattern" in result.stderr

    api = cluster5.api(0)
    missing, _ = add_bytes(b"content no node of this devstack holds")
    cases = [
        ({"inputs": [{"cid": "not-a-cid"}]}, "inputs[0].cid"),
        ({"inputs": [{"cid": missing, "path": "/data"}]}, "inputs[0].path"),
        ({"inputs": [{"cid": missing}]}, "inputs[0].cid"),  # nobody has it
        ({"sharding": {"glob_pattern": "*.txt"}}, "sharding"),  # no inputs to shard
    ]
    for extra, field in cases:
        spec = {"image": "busybox", "command": ["true"], **extra}
        response = httpx.post(f"{api}/api/v1/jobs", json=spec, timeout=60)
        assert response.status_code == 400, (extra, response.text)
        assert response.json()["field"] == field, (extra, response.json())
    # Nothing that was refused became a job.
    jobs = httpx.get(f"{api}/api/v1/jobs", params={"role": "requester"}, timeout=10).json()
    assert all(j["job"]["spec"]["image"] != "busybox" or j["job"]["spec"]["command"] != ["true"]
               for j in jobs["jobs"])  # fmt: skip
    describe_job(api, jobs["jobs"][0]["job"]["id"])  # the node still answers


@pytest.mark.timeout(120)
def test_every_node_lists_the_images_it_can_run(cluster5: Devstack) -> None:
    for api in cluster5.apis:
        answer = httpx.get(f"{api}/api/v1/images", timeout=30)
        assert answer.status_code == 200, answer.text
        assert "busybox:latest" in answer.json()["images"], answer.json()
