"""The figures ``devstack bench publish`` and ``bench shards`` read from a job's events and
outputs, on hand-built event lists and outputs (no cluster)."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from typing import Any

import pytest

from devstack.bench.options import cluster_sizes
from devstack.bench.publish import (
    ShardLatency,
    latency_figures,
    shard_latencies,
    spread,
)
from devstack.bench.shards import (
    coverage,
    file_name,
    make_text,
    output_mismatches,
    run_figures,
    speedup,
)

REQ = "12D3KooWRequester"
A, B, C = "12D3KooWNodeA", "12D3KooWNodeB", "12D3KooWNodeC"


def ev(
    kind: str, at: float, shard: int | None = 0, node: str = REQ, **detail: Any
) -> dict[str, Any]:
    return {"job_id": "j", "kind": kind, "at": at, "node": node, "shard": shard, "detail": detail}


def healthy_shard(shard: int, t0: float) -> list[dict[str, Any]]:
    """c = 3, all agree: answers at +1.0, +1.2, +1.5; go-ahead at +1.51; published by +1.9."""
    return [
        ev("bid_accepted", t0, shard, peer=A),
        ev("proposed", t0 + 1.0, shard, peer=A, run_ms=900.0),
        ev("proposed", t0 + 1.2, shard, peer=B, run_ms=950.0),
        ev("proposed", t0 + 1.5, shard, peer=C, run_ms=1000.0),
        ev("verifying", t0 + 1.505, shard, state="verifying"),
        ev("publishing", t0 + 1.51, shard, state="publishing"),
        ev("results_accepted", t0 + 1.52, shard, peer=A),
        ev("results_accepted", t0 + 1.52, shard, peer=B),
        ev("results_accepted", t0 + 1.52, shard, peer=C),
        ev("published", t0 + 1.6, shard, peer=B),
        ev("published", t0 + 1.9, shard, peer=A),
        ev("published", t0 + 1.7, shard, peer=C),
        ev("shard_completed", t0 + 1.91, shard, state="completed"),
    ]


def test_latencies_of_a_healthy_shard() -> None:
    events = [ev("created", 0.0, None), *healthy_shard(0, 10.0), ev("completed", 12.0, None)]
    [got] = shard_latencies(events, REQ)
    assert got.shard == 0
    assert got.verify_ms == pytest.approx(20.0)  # last proposal 11.5 -> first verdict 11.52
    assert got.publish_ms == pytest.approx(390.0)  # publishing 11.51 -> last published 11.9


def test_events_are_ordered_by_time_and_shards_kept_apart() -> None:
    events = healthy_shard(1, 20.0) + healthy_shard(0, 10.0)
    events.reverse()
    got = shard_latencies(events, REQ)
    assert [s.shard for s in got] == [0, 1]
    for s in got:
        assert s.verify_ms == pytest.approx(20.0)
        assert s.publish_ms == pytest.approx(390.0)


def test_the_requesters_compute_role_and_other_nodes_are_ignored() -> None:
    events = healthy_shard(0, 10.0)
    # The requester also ran the shard: its compute side logs under its own id with a role,
    # later than any requester answer; another node's copy of events is not the requester's.
    events += [
        ev("proposed", 11.515, role="compute", result_id="x"),
        ev("published", 12.5, role="compute", result_id="x"),
        ev("results_rejected", 10.5, node=A, peer=A),
        ev("published", 13.0, node=B, peer=B),
    ]
    [got] = shard_latencies(events, REQ)
    assert got.verify_ms == pytest.approx(20.0)
    assert got.publish_ms == pytest.approx(390.0)


def test_a_rejection_before_the_go_ahead_is_the_first_verdict() -> None:
    events = [
        ev("proposed", 1.0, peer=A),
        ev("compute_error", 1.3, peer=C, reason="boom"),
        ev("proposed", 1.1, peer=B),
        ev("results_rejected", 1.304, peer=B, reason="differs"),
        ev("publishing", 1.31),
        ev("results_accepted", 1.32, peer=A),
        ev("published", 1.4, peer=A),
    ]
    [got] = shard_latencies(events, REQ)
    assert got.verify_ms == pytest.approx(4.0)  # the compute_error at 1.3 was the last answer
    assert got.publish_ms == pytest.approx(90.0)


def test_a_rerun_measures_the_first_verdict_and_the_last_publication() -> None:
    events = [
        ev("proposed", 1.0, peer=A),
        ev("proposed", 1.1, peer=B),
        ev("results_rejected", 1.105, peer=A),
        ev("results_rejected", 1.106, peer=B),
        ev("rerun", 1.2, attempt=1),
        ev("proposed", 3.0, peer=C),
        ev("publishing", 3.01),
        ev("results_accepted", 3.02, peer=C),
        ev("published", 3.2, peer=C),
    ]
    [got] = shard_latencies(events, REQ)
    assert got.verify_ms == pytest.approx(5.0)
    assert got.publish_ms == pytest.approx(190.0)


def test_a_shard_without_verdict_or_publication_has_no_figures() -> None:
    events = [
        ev("bid_accepted", 0.5, peer=A),
        ev("compute_error", 1.0, peer=A, reason="image missing"),
        ev("error", 1.1, None, reason="all 1 node(s) failed"),
    ]
    assert shard_latencies(events, REQ) == [ShardLatency(0, None, None)]
    # A verdict with no answer before it (not seen in practice) is no figure either.
    assert shard_latencies([ev("results_rejected", 1.0, peer=A)], REQ)[0].verify_ms is None
    # Publishing but nothing published yet.
    assert shard_latencies([ev("publishing", 1.0)], REQ)[0].publish_ms is None


def answer(state: str, events: list[dict[str, Any]], reason: str = "") -> dict[str, Any]:
    return {
        "job": {"job": {"id": f"job-{state}-{len(events)}"}, "state": state, "reason": reason},
        "requester": REQ,
        "events": events,
    }


def test_latency_figures_count_only_completed_jobs() -> None:
    answers = [
        answer("completed", healthy_shard(0, 0.0) + healthy_shard(1, 5.0)),
        answer("completed", healthy_shard(0, 9.0)),
        answer("error", [*healthy_shard(0, 0.0)[:3]], reason="verification accepted no result"),
    ]
    got = latency_figures(answers)
    assert got["completed"] == 2
    assert got["failed"] == 1
    assert got["failures"] == ["job-error-3 error: verification accepted no result"]
    assert got["verification_ms"]["n"] == 3
    assert got["verification_ms"]["p50"] == pytest.approx(20.0)
    assert got["publication_ms"] == {"n": 3, "p50": 390.0, "p99": 390.0, "max": 390.0}


def test_spread() -> None:
    assert spread([]) == {"n": 0, "p50": None, "p99": None, "max": None}
    values = [float(v) for v in range(1, 101)]
    assert spread(values) == {"n": 100, "p50": 50.5, "p99": 99.0, "max": 100.0}


# -- bench shards ------------------------------------------------------------------------


def default_work_output(names: Sequence[str], contents: dict[str, bytes]) -> str:
    """What the default work prints (busybox): per file ``wc -w``, ``sha256sum`` and the
    count of distinct words."""
    lines = []
    for name in names:
        data = contents[name]
        lines.append(f"{len(data.split())} /inputs/{name}")
        lines.append(f"{hashlib.sha256(data).hexdigest()}  /inputs/{name}")
        lines.append(f"{len(set(data.split()))} /inputs/{name}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def inputs() -> dict[str, bytes]:
    return {file_name(i): make_text(i, 2000) for i in range(10)}


def test_generated_inputs_are_reproducible_text_of_the_size_asked(
    inputs: dict[str, bytes],
) -> None:
    assert make_text(3, 2000) == inputs[file_name(3)]
    assert make_text(3, 2000) != make_text(4, 2000)
    for data in inputs.values():
        assert len(data) == 2000
        assert data.endswith(b"\n")
        assert data.decode("ascii").replace("\n", " ").replace(" ", "").isalpha()
    assert file_name(7) == "file-0007.txt"


def test_coverage_of_a_right_sharding(inputs: dict[str, bytes]) -> None:
    names = sorted(inputs)
    shards = [names[0:4], names[4:8], names[8:10]]
    stdouts = [default_work_output(shard, inputs) for shard in shards]
    assert coverage(stdouts, names) == []
    assert output_mismatches(stdouts, inputs) == []


def test_coverage_finds_missing_repeated_and_strange_files(inputs: dict[str, bytes]) -> None:
    names = sorted(inputs)
    stdouts = [
        default_work_output(names[0:4], inputs),
        default_work_output(names[3:8], inputs),  # file-0003 again, file-0008/9 nowhere
        "1 /inputs/notes.md\n",
    ]
    assert coverage(stdouts, names) == [
        "file-0008.txt: in no shard's output",
        "file-0009.txt: in no shard's output",
        "file-0003.txt: in the output of 2 shards",
        "notes.md: not an input file",
    ]


def test_a_name_that_extends_another_is_not_taken_for_it() -> None:
    assert coverage(["/inputs/a.txt.bak\n"], ["a.txt"]) == [
        "a.txt: in no shard's output",
        "a.txt.bak: not an input file",
    ]


def test_output_mismatches_name_wrong_and_extra_lines(inputs: dict[str, bytes]) -> None:
    names = sorted(inputs)
    right = default_work_output(names, inputs)
    count = len(inputs[names[0]].split())
    wrong = right.replace(f"{count} /inputs/{names[0]}", f"{count + 1} /inputs/{names[0]}", 1)
    assert output_mismatches([wrong], inputs) == [
        f"missing: {count} /inputs/{names[0]}",
        f"unexpected: {count + 1} /inputs/{names[0]}",
    ]
    # Padding and blank lines do not matter; a line printed twice does.
    padded = "\n" + right.replace(f"{count} /inputs/", f"   {count}   /inputs/", 1)
    assert output_mismatches([padded], inputs) == []
    twice = right + f"{count} /inputs/{names[0]}\n"
    assert output_mismatches([twice], inputs) == [f"unexpected: {count} /inputs/{names[0]}"]


def test_run_figures_count_runners_and_run_time() -> None:
    events = [
        ev("proposed", 1.0, 0, peer=A, run_ms=1500.0),
        ev("proposed", 1.1, 1, peer=B, run_ms=1000.0),
        ev("proposed", 2.0, 2, peer=A, run_ms=500.0),
        ev("proposed", 2.0, 2, role="compute", result_id="x"),  # the requester's own side
        ev("proposed", 2.0, 2, node=B, peer=B, run_ms=9999.0),  # not the requester's record
    ]
    got = run_figures({"job": {"job": {"shards": 3}}, "requester": REQ, "events": events})
    assert got == {"shards": 3, "nodes_used": 2, "run_s_sum": 3.0}


def test_speedup_is_smallest_over_largest_cluster() -> None:
    def size(nodes: int, median: float | None) -> dict[str, Any]:
        return {"nodes": nodes, "wall_s": None if median is None else {"median": median}}

    assert speedup([size(1, 8.0), size(5, 2.0), size(3, 4.0)]) == {
        "from_nodes": 1,
        "to_nodes": 5,
        "median_wall": 4.0,
    }
    assert speedup([size(1, 8.0)]) is None
    assert speedup([size(1, 8.0), size(5, None)]) is None


def test_sizes_argument() -> None:
    assert cluster_sizes("1,5") == [1, 5]
    assert cluster_sizes(" 2, 10 ,") == [2, 10]
    for bad in ("", "0,5", "a", "1;5"):
        with pytest.raises(argparse.ArgumentTypeError):
            cluster_sizes(bad)


def test_shard_stdouts_use_whole_previews_and_fetch_cut_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devstack.bench import shards as bench_shards
    from node.compute import STDOUT_PREVIEW_BYTES

    fetched: list[str] = []

    def fetch(state: object, answer: dict[str, Any]) -> list[str]:
        fetched.append(answer["job"]["job"]["id"])
        return ["whole 0", "whole 1"]

    monkeypatch.setattr(bench_shards.jobs, "shard_stdouts", fetch)

    def described(previews: list[str | None]) -> dict[str, Any]:
        executions = [
            {"shard": i, "state": "published", "stdout_preview": p} for i, p in enumerate(previews)
        ]
        executions.append({"shard": 0, "state": "results_rejected", "stdout_preview": "other"})
        job = {"id": f"job-{len(fetched)}", "shards": len(previews)}
        return {"job": {"job": job, "executions": executions}}

    cluster: Any = argparse.Namespace(state=None)
    assert bench_shards.shard_stdouts(cluster, described(["a\n", "b\n"])) == ["a\n", "b\n"]
    assert fetched == []
    cut = "x" * STDOUT_PREVIEW_BYTES
    assert bench_shards.shard_stdouts(cluster, described(["a\n", cut])) == ["whole 0", "whole 1"]
    assert bench_shards.shard_stdouts(cluster, described(["a\n", None])) == ["whole 0", "whole 1"]
    assert len(fetched) == 2
