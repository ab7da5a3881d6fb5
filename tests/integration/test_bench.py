"""``devstack bench`` end to end: real node processes, real Docker, JSON out.

Checks the shape and sanity of the figures (never how fast anything is) and that
each bench leaves no node process and no container behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psutil
import pytest

from devstack import state as st
from devstack.cluster import CONTAINER_LABEL
from tests.conftest import BID_FIGURE_KEYS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"n", "median", "p95", "mean", "min", "max"}


@pytest.fixture(scope="module")
def docker_client() -> Any:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"Docker daemon not reachable (run .ci/setup-docker): {exc}")
    yield client
    client.close()


def run_bench(state_dir: Path, *argv: str) -> dict[str, Any]:
    """Run ``devstack --state-dir STATE_DIR bench ARGV... --json``; its JSON object."""
    done = subprocess.run(
        [sys.executable, "-m", "devstack.cli", "--state-dir", str(state_dir), "bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, f"bench failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def assert_summary(summary: dict[str, float], n: int) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["n"] == n
    assert 0 < summary["min"] <= summary["median"] <= summary["p95"] <= summary["max"]
    assert summary["min"] <= summary["mean"] <= summary["max"]


def assert_host(result: dict[str, Any]) -> None:
    host = result["host"]
    assert host["cpus"] >= 1
    assert host["load_start"] >= 0 and host["load_end"] >= 0


def assert_nothing_left(result: dict[str, Any], client: Any) -> None:
    """No recorded node process runs, no node container exists, the temp dir is gone."""
    procs = result["node_processes"]
    assert procs
    for proc in procs:
        # A zombie is not running: it waits for init to reap it once the bench exited.
        assert not st.is_alive(proc["pid"], proc["started"]), f"node {proc['pid']} is running"
    peers = {p["peer_id"] for p in procs}
    left = [
        c.name
        for c in client.containers.list(all=True, filters={"label": CONTAINER_LABEL})
        if c.labels.get(CONTAINER_LABEL) in peers
    ]
    assert not left, f"containers of the bench's nodes left behind: {left}"
    assert not Path(result["state_dir"]).exists()


def test_overhead(tmp_path: Path, docker_client: Any) -> None:
    jobs = 3
    r = run_bench(
        tmp_path, "overhead", "--nodes", "3", "--beside", "2", "--jobs", str(jobs), "--json"
    )

    assert r["bench"] == "overhead"
    assert (r["nodes"], r["jobs"], r["completed"], r["reused"]) == (3, jobs, jobs, False)
    assert r["failures"] == []
    for key in ("cluster_wall_ms", "cluster_events_ms", "docker_cli_ms", "docker_sdk_ms"):
        assert_summary(r[key], jobs)
    # The client sees the job end after the requester recorded it.
    assert r["cluster_wall_ms"]["min"] >= r["cluster_events_ms"]["min"]
    for key in ("overhead_vs_cli_ms", "overhead_vs_sdk_ms"):
        assert set(r[key]) == {"median", "p95"}
        assert all(isinstance(v, float) for v in r[key].values())
    phases = r["phases_ms"]
    for kind in ("offered", "bidding_closed", "verifying", "publishing", "completed"):
        assert phases[kind] > 0, kind
    assert list(phases.values()) == sorted(phases.values())
    assert phases["offered"] <= phases["bidding_closed"] <= phases["verifying"]
    assert phases["verifying"] <= phases["publishing"] <= phases["completed"]
    assert phases["completed"] == pytest.approx(r["cluster_events_ms"]["median"], abs=0.15)
    assert 0 <= r["ran_on_requester"] <= jobs
    assert set(r["executor_phases_ms"]) == {"create", "start", "wait", "logs", "outputs", "remove"}
    after = r["after_exit_ms"]
    assert set(after) == {
        "results", "seal", "to_verdict", "to_published", "publish", "to_completed", "total"
    }  # fmt: skip
    assert all(v >= 0 for v in after.values()), after
    assert all(len(v) == jobs for v in r["samples_ms"].values())

    # The 2-node cluster ran in the same rounds, beside the first, with the same native runs.
    beside = r["beside"]
    assert (beside["nodes"], beside["completed"]) == (2, jobs)
    assert beside["samples_ms"]["docker_sdk"] == r["samples_ms"]["docker_sdk"]
    ratio = beside["cluster_wall_ms"]["median"] / r["cluster_wall_ms"]["median"] - 1
    assert r["beside_vs_cluster_median"] == pytest.approx(ratio, abs=1e-3)
    assert_host(r)
    assert_nothing_left(r, docker_client)
    assert_nothing_left(beside, docker_client)
    assert not docker_client.containers.list(all=True, filters={"label": r["native_label"]})


def test_cluster(tmp_path: Path, docker_client: Any) -> None:
    r = run_bench(tmp_path, "cluster", "--nodes", "3", "--seconds", "2", "--settle", "1", "--json")

    assert r["bench"] == "cluster"
    assert r["nodes"] == 3
    assert r["ready_s"] > 0
    assert r["fork_to_ready_s"] is None or 0 < r["fork_to_ready_s"] <= r["ready_s"]
    assert_summary(r["rss_mib"], 3)
    assert_summary(r["uss_mib"], 3)
    assert r["uss_mib"]["max"] <= r["rss_mib"]["max"]
    assert 1 < r["rss_mib"]["median"] < 4096  # a Python process, in MiB
    assert r["pss_total_mib"] > 0
    assert 0 <= r["idle_cpu_percent_of_core"] <= 100 * (psutil.cpu_count() or 1)
    assert r["idle_cpu_percent_per_node"]["n"] == 3
    assert r["idle_seconds"] >= 2
    assert_host(r)
    assert_nothing_left(r, docker_client)


def test_bench_cli_times_every_verb(tmp_path: Path, docker_client: Any) -> None:
    r = run_bench(tmp_path, "cli", "--nodes", "2", "--runs", "2", "--json")

    assert r["bench"] == "cli" and r["runs"] == 2
    verbs = {"--help", "status", "list", "describe", "submit --help", "submit (to the HTTP call)"}
    assert set(r["verbs"]) == verbs
    for figures in r["verbs"].values():
        assert_summary(figures, 2)
    assert_host(r)
    assert_nothing_left(r, docker_client)


def test_bench_tui_reports_the_apps_figures(tmp_path: Path, docker_client: Any) -> None:
    r = run_bench(tmp_path, "tui", "--nodes", "2", "--keys", "6", "--seconds", "2", "--json")

    assert r["bench"] == "tui" and r["nodes"] == 2
    assert r["live_table_s"] > 0
    assert_summary(r["key_to_effect_ms"], r["key_to_effect_ms"]["n"])
    assert 4 <= r["key_to_effect_ms"]["n"] <= 6  # cursor moves only on the home view
    assert r["loop_blocked_max_ms"] >= 0
    assert r["cpu_percent_of_core"] >= 0 and r["poll_rounds"] >= 1
    assert_host(r)
    assert_nothing_left(r, docker_client)


def test_bench_instruments_prices_every_lock_and_the_detector(tmp_path: Path) -> None:
    r = run_bench(tmp_path, "instruments", "--acquisitions", "5000", "--json")

    assert set(r["lock_ns_per_acquire"]) == {
        "threading.Lock",
        "ThreadLock",
        "trio.Lock",
        "TrioLock",
        "TrioLock fast_acquire",
    }
    assert all(ns > 0 for ns in r["lock_ns_per_acquire"].values())
    assert set(r["stall_detector_ns_per_step"]) == {
        "baseline_ns_per_step",
        "instrumented_ns_per_step",
        "overhead_ns_per_step",
    }
    assert_host(r)


def test_bench_bids_reports_the_simulator_keys(tmp_path: Path) -> None:
    result = run_bench(
        tmp_path,
        "bids",
        "--nodes",
        "3",
        "--jobs",
        "6",
        "--concurrency",
        "2",
        "--rate",
        "10",
        "--settle",
        "0",
        "--json",
    )
    for key in BID_FIGURE_KEYS:
        assert key in result, key
    assert result["jobs"] == 6
    assert result["jobs_never_completed"] == 0
    # Every job needs 2 accepted bids; no job can get more bids than there are nodes.
    assert 2 <= result["bids_per_job_mean"] <= result["bids_per_job_max"] <= 3
    assert result["bids_sent_total"] >= 12


def test_bench_load_reports_throughput_latency_and_contention(
    tmp_path: Path, docker_client: Any
) -> None:
    jobs = 30
    r = run_bench(
        tmp_path, "load", "--nodes", "3", "--jobs", str(jobs), "--rate", "10", "--settle", "0",
        "--json",
    )  # fmt: skip
    assert r["bench"] == "load" and r["nodes"] == 3 and r["engine"] == "noop"
    assert r["dispatch"] == "offer" and r["highest_rate_held"] == 10
    [step] = r["steps"]
    assert (step["jobs"], step["completed"], step["failed"]) == (jobs, jobs, 0)
    assert 0 < step["latency_p50_ms"] <= step["latency_p95_ms"] <= step["latency_p99_ms"]
    assert step["latency_p99_ms"] <= step["latency_max_ms"]
    assert step["sustained_jobs_per_s"] > 0 and step["node_cpu_s"] > 0
    # A c=1 job costs six messages when no offer is declined or slow; never gossip.
    assert step["messages_per_job"] >= 6, step["messages_per_job_by_kind"]
    assert step["messages_per_job_by_kind"]["direct.BidAccepted"] == 1
    assert not [k for k in step["messages_per_job_by_kind"] if k.startswith("gossip.")]
    assert step["gossip_deliveries_per_job"] == 0
    assert 0 <= step["opened_stream_share"] <= 1 and 0 <= step["dialled_share"] <= 1
    # The loops ran (each job is many task steps on every node), whatever stalled.
    assert step["loop_steps"] > 100 * jobs
    assert step["stalls"] >= 0 and step["stall_ms"] >= 0
    for row in step["locks"]:
        assert row["contended"] > 0 and row["wait_ms"] >= 0, row
    assert_host(r)
    assert_nothing_left(r, docker_client)


CHAOS_KEYS = {
    "jobs", "submitted", "refused", "submit_retries", "completed", "error", "cancelled",
    "open", "reasons", "retries", "detection_s", "recovery_s", "kills", "kill_log",
    "results_differ", "leftover_containers", "left_after_down", "reference",
}  # fmt: skip


def test_bench_chaos_accounts_for_every_job_through_a_kill(
    tmp_path: Path, docker_client: Any
) -> None:
    jobs = 20
    r = run_bench(
        tmp_path, "chaos", "--nodes", "4", "--jobs", str(jobs), "--rate", "2",
        "--kill-every", "3", "--pause", "1", "--max-kills", "1", "--json",
    )  # fmt: skip
    assert r.keys() >= CHAOS_KEYS, CHAOS_KEYS - r.keys()
    assert (r["bench"], r["nodes"], r["engine"], r["reused"]) == ("chaos", 4, "noop", False)
    # A submission that met the killed node went to another one: none was lost.
    assert (r["submitted"], r["refused"]) == (jobs, [])
    assert r["completed"] + r["error"] + r["cancelled"] + r["open"] == jobs
    assert sum(reason["count"] for reason in r["reasons"]) <= r["error"] + r["cancelled"]
    for figure in ("detection_s", "recovery_s"):
        assert set(r[figure]) == {"n", "p50", "p95"}
    # Twenty submissions at 2/s take 9.5 s at least: the one kill, at 3 s, falls among them.
    kills = r["kills"]
    assert kills["total"] == 1 == kills["of_requesters"] + kills["of_compute_nodes"]
    [kill] = r["kill_log"]
    assert kill["restarted_pid"] is not None
    assert sorted(r["reference"]) == [str(k) for k in range(10)]
    assert r["results_differ"] == 0
    assert r["leftover_containers"] == 0
    assert r["left_after_down"] == {"processes": [], "containers": 0}
    assert not st.is_alive(kill["pid"], kill["started"])
    assert_host(r)
    assert_nothing_left(r, docker_client)


PARTITION_KEYS = {
    "jobs", "submitted", "completed", "error", "cancelled", "open", "by_side_and_phase",
    "reruns_across_cut", "adopted_after_heal", "ended_twice", "published_twice",
    "results_differ", "sizes_before_heal", "converged_after_heal_s", "network", "latency_s",
    "leftover_containers", "left_after_down", "partition_s",
}  # fmt: skip


def test_bench_partition_completes_every_job_on_both_sides_of_a_30s_cut(
    tmp_path: Path, docker_client: Any
) -> None:
    """A host of 3 is cut off for 30 s while Docker jobs stream in on every node: the
    jobs submitted on either side complete, none ends twice or is published twice,
    their results are the quiet cluster's, the network converges after the heal,
    and nothing of the cluster or its network is left."""
    jobs = 60
    r = run_bench(
        tmp_path, "partition", "--nodes", "6", "--hosts", "3", "--jobs", str(jobs),
        "--rate", "1.5", "--cut-after", "6", "--partition", "30", "--engine", "docker",
        "--json",
    )  # fmt: skip
    assert r.keys() >= PARTITION_KEYS, PARTITION_KEYS - r.keys()
    assert (r["bench"], r["nodes"], r["hosts"], r["cut_host"]) == ("partition", 6, 3, "host-2")
    assert (r["submitted"], r["refused"]) == (jobs, [])
    assert (r["completed"], r["reasons"]) == (jobs, [])
    table = r["by_side_and_phase"]
    # 30 s at 1.5/s, round robin over 6 nodes of which 2 are cut off: some on each side.
    assert table["cut"]["during"]["completed"] > 0
    assert table["rest"]["during"]["completed"] > 0
    assert (r["ended_twice"], r["published_twice"], r["results_differ"]) == (0, 0, 0)
    assert len(r["sizes_before_heal"]) == 6
    assert r["converged_after_heal_s"] is not None
    assert r["leftover_containers"] == 0
    assert r["left_after_down"] == {"processes": [], "containers": 0}
    assert_host(r)
    assert_nothing_left(r, docker_client)
    tag = r["network"]["tag"]
    listed = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True)
    assert not [n for n in json.loads(listed.stdout or "[]") if n["name"].startswith(f"pyb{tag}")]
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True)
    assert not [n for n in json.loads(links.stdout or "[]") if n["ifname"].startswith(f"pyb{tag}")]


def test_bench_byzantine_reports_every_policy_and_escalation_lets_no_forgery_through(
    tmp_path: Path, docker_client: Any
) -> None:
    """2 colluding bad actors of 8: a plain majority may publish their result (when
    both run a job), escalation cannot (no third colluder exists to outvote the fresh
    honest runs), and every job is counted once."""
    jobs = 20
    r = run_bench(
        tmp_path, "byzantine", "--nodes", "8", "--bad-actors", "2", "--jobs", str(jobs),
        "--rate", "5", "--requesters", "1", "--json",
    )  # fmt: skip
    assert (r["bench"], r["nodes"], r["bad_actors"], r["collude"]) == ("byzantine", 8, 2, True)
    assert r["honest_cid"] and r["refused"] == []
    assert list(r["policies"]) == ["majority", "escalation", "spot", "credibility", "all"]
    for name, policy in r["policies"].items():
        outcomes = [policy[k] for k in ("honest", "forged", "error", "open")]
        assert sum(outcomes) == policy["jobs"] == jobs, (name, policy)
        assert policy["open"] == 0 and sum(policy["first_runs_with_bad"].values()) == jobs
        assert policy["verdict_s"]["n"] == jobs
        if name != "majority":
            assert policy["forged"] == 0 and policy["error"] == 0, (name, policy)
    majority = r["policies"]["majority"]
    assert majority["escalations"] == majority["spot_checks"] == 0
    assert majority["forged"] == majority["first_runs_with_bad"].get("2", 0)
    assert r["left_after_down"] == {"processes": [], "containers": 0}
    assert_host(r)
    assert_nothing_left(r, docker_client)
