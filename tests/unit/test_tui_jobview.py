"""The job view's pure part (:mod:`tui.jobview`) over describe answers captured from a
real devstack (``data/tui/describes.json``, see ``tui_fake_jobs``): every figure is
checked against the events' own timestamps, and a few hand-made answers cover what
the captures do not (a re-run, a ``gate`` event, missing fields, escalations and spot
checks: ``tui_fake_checks``)."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from tests.unit import tui_fake_checks
from tests.unit.tui_fake_jobs import DATA
from tui import jobview as jv
from tui.widgets.gate_panel import gate_text
from tui.widgets.job_panels import header_text, results_text

CAPTURED = json.loads(DATA.read_text())
D: dict[str, dict[str, Any]] = CAPTURED["describes"]
PEERS: list[str] = CAPTURED["peers"]
NAMES = {peer: f"node-{i}" for i, peer in enumerate(PEERS)}


def _events(describe: dict[str, Any], kind: str, **where: Any) -> list[dict[str, Any]]:
    found = []
    for event in describe["events"]:
        if event["kind"] != kind:
            continue
        detail = event["detail"]
        if (
            where.get("compute") is not None
            and (detail.get("role") == "compute") != where["compute"]
        ):
            continue
        if "peer" in where and detail.get("peer") != where["peer"]:
            continue
        if "shard" in where and event["shard"] != where["shard"]:
            continue
        found.append(event)
    return found


def _one(describe: dict[str, Any], kind: str, **where: Any) -> dict[str, Any]:
    found = _events(describe, kind, compute=False, **where)
    assert len(found) == 1, (kind, where, found)
    return found[0]


def _row(rows: list[jv.TimelineRow], kind: str, **where: Any) -> jv.TimelineRow:
    found = [
        r
        for r in rows
        if r.kind == kind
        and r.role == where.get("role", "requester")
        and ("node" not in where or r.node == where["node"])
        and ("shard" not in where or r.shard == where["shard"])
    ]
    assert len(found) == 1, (kind, where, found)
    return found[0]


# -- the timeline -------------------------------------------------------------------------


def test_timeline_has_every_event_in_order_with_its_offset() -> None:
    describe = D["step_completed"]
    rows = jv.timeline(describe, NAMES)
    created = describe["job"]["job"]["created_at"]
    assert [r.kind for r in rows] == [e["kind"] for e in describe["events"]]
    assert [r.seq for r in rows] == list(range(len(rows)))
    for row, event in zip(rows, describe["events"], strict=True):
        assert row.offset_s == pytest.approx(event["at"] - created)
        assert row.role == ("compute" if event["detail"].get("role") == "compute" else "requester")
        assert row.phase == jv.PHASE_OF.get(row.kind, row.phase)
        assert row.node_name.startswith("node-")


def test_timeline_phase_latencies_come_from_the_events() -> None:
    d = D["step_completed"]
    rows = jv.timeline(d, NAMES)
    created = d["job"]["job"]["created_at"]
    announced = _one(d, "announced")["at"]
    closed = _one(d, "bidding_closed", shard=0)["at"]
    verifying = _one(d, "verifying", shard=0)["at"]
    publishing = _one(d, "publishing", shard=0)["at"]

    assert _row(rows, "created").took_s is None
    assert _row(rows, "announced").took_s == pytest.approx(announced - created)
    assert _row(rows, "bidding_closed").took_s == pytest.approx(closed - announced)
    assert _row(rows, "verifying").took_s == pytest.approx(verifying - closed)
    assert _row(rows, "publishing").took_s == pytest.approx(publishing - verifying)
    for peer in PEERS:
        accepted = _one(d, "bid_accepted", peer=peer)["at"]
        proposed = _one(d, "proposed", peer=peer)["at"]
        verdict = _one(d, "results_accepted", peer=peer)["at"]
        published = _one(d, "published", peer=peer)["at"]
        assert _row(rows, "bid_accepted", node=peer).took_s == pytest.approx(accepted - announced)
        assert _row(rows, "proposed", node=peer).took_s == pytest.approx(proposed - accepted)
        assert _row(rows, "results_accepted", node=peer).took_s == pytest.approx(
            verdict - verifying
        )
        assert _row(rows, "published", node=peer).took_s == pytest.approx(published - verdict)
    completed = _row(rows, "completed")
    assert completed.phase == "end"
    assert completed.took_s == pytest.approx(_one(d, "completed")["at"] - created)
    assert _row(rows, "shard_completed").took_s == pytest.approx(
        _one(d, "shard_completed")["at"] - publishing
    )


def test_timeline_stepped_is_the_time_the_gate_held() -> None:
    # The requester's log has no readable ``gate`` event (see the report): a stepped
    # event counts from the shard's event before it.
    d = D["step_completed"]
    rows = jv.timeline(d, NAMES)
    verdict_step = next(r for r in rows if r.kind == "stepped" and "verdict" in r.detail)
    publish_step = next(r for r in rows if r.kind == "stepped" and "publish" in r.detail)
    assert verdict_step.phase == "verdict" and publish_step.phase == "published"
    verifying = _one(d, "verifying")["at"]
    assert verdict_step.took_s == pytest.approx(verdict_step.at - verifying)
    assert publish_step.took_s == pytest.approx(publish_step.at - verdict_step.at)


def test_timeline_compute_events_count_from_their_previous_one() -> None:
    d = D["step_completed"]
    rows = jv.timeline(d, NAMES)
    compute = [r for r in rows if r.role == "compute"]
    assert [r.kind for r in compute] == ["bid", "bid_accepted", "running", "proposed", "published"]
    announced = _one(d, "announced")["at"]
    assert compute[0].took_s == pytest.approx(compute[0].at - announced)
    for before, after in itertools.pairwise(compute):
        assert after.took_s == pytest.approx(after.at - before.at)
    assert all(r.node == d["requester"] for r in compute)


def test_timeline_of_a_sharded_job_is_per_shard() -> None:
    d = D["sharded_completed"]
    rows = jv.timeline(d, NAMES)
    assert {r.shard for r in rows} == {None, 0, 1, 2}
    announced = _one(d, "announced")["at"]
    for shard in range(3):
        closed = _one(d, "bidding_closed", shard=shard)
        assert _row(rows, "bidding_closed", shard=shard).took_s == pytest.approx(
            closed["at"] - announced
        )
        verifying = _one(d, "verifying", shard=shard)["at"]
        assert _row(rows, "verifying", shard=shard).took_s == pytest.approx(
            verifying - closed["at"]
        )


def test_timeline_details_and_filter_text() -> None:
    rows = jv.timeline(D["split_error"], NAMES)
    proposed = [r for r in rows if r.kind == "proposed" and r.role == "requester"]
    assert all("bafy…" in r.detail and "run " in r.detail for r in proposed)
    rejected = [r for r in rows if r.kind == "results_rejected" and r.role == "requester"]
    assert all("3 proposals, 3 different results" in r.detail for r in rejected)
    error = _row(rows, "error")
    assert error.phase == "end" and "verification accepted no result" in error.detail
    assert "node-1" in next(r for r in rows if r.node_name == "node-1").search_text
    assert "shard 0" in proposed[0].search_text


# -- runs and shards ----------------------------------------------------------------------


def test_run_phases_of_a_completed_step_job() -> None:
    d = D["step_completed"]
    runs = jv.run_phases(d, NAMES)
    assert {r.node for r in runs} == set(PEERS) and len(runs) == 3
    created = d["job"]["job"]["created_at"]
    announced = _one(d, "announced")["at"]
    verifying = _one(d, "verifying")["at"]
    for run in runs:
        accepted = _one(d, "bid_accepted", peer=run.node)["at"]
        proposed = _one(d, "proposed", peer=run.node)
        verdict = _one(d, "results_accepted", peer=run.node)["at"]
        published = _one(d, "published", peer=run.node)["at"]
        assert run.state == "published" and run.gated
        assert run.bid_s == pytest.approx(accepted - announced)
        assert run.run_s == pytest.approx(proposed["detail"]["run_ms"] / 1000)
        assert run.proposed_s == pytest.approx(proposed["at"] - accepted)
        assert run.verdict_s == pytest.approx(verdict - verifying)
        assert run.published_s == pytest.approx(published - verdict)
        assert run.total_s == pytest.approx(published - created)
        assert run.result_id == d["shards"][0]["cid"]
        assert run.node_name == NAMES[run.node]


def test_run_phases_before_the_verdict_have_no_verdict() -> None:
    runs = jv.run_phases(D["step_verdict"], NAMES)
    assert [r.state for r in runs] == ["proposed"] * 3
    assert all(r.verdict_s is None and r.published_s is None and not r.gated for r in runs)
    assert all(r.run_s is not None and r.proposed_s is not None for r in runs)


def test_run_phases_of_rejected_runs() -> None:
    runs = jv.run_phases(D["split_error"], NAMES)
    assert [r.state for r in runs] == ["results_rejected"] * 3
    assert all(r.verdict_s is not None and r.published_s is None for r in runs)
    assert all(r.reason == "3 proposals, 3 different results" for r in runs)
    assert len({r.result_id for r in runs}) == 3


def test_run_phases_of_a_sharded_job_are_per_shard_and_node() -> None:
    runs = jv.run_phases(D["sharded_completed"], NAMES)
    assert [r.shard for r in runs] == [0, 0, 1, 1, 2, 2]
    assert len({r.key for r in runs}) == 6
    by_shard = {s["shard"]: s["cid"] for s in D["sharded_completed"]["shards"]}
    assert all(r.result_id == by_shard[r.shard] for r in runs)


def test_shard_phases() -> None:
    d = D["sharded_completed"]
    phases = jv.shard_phases(d)
    assert [p.shard for p in phases] == [0, 1, 2]
    created = d["job"]["job"]["created_at"]
    announced = _one(d, "announced")["at"]
    for p in phases:
        s = p.shard
        closed = _one(d, "bidding_closed", shard=s)["at"]
        first_bid = min(e["at"] for e in _events(d, "bid_accepted", compute=False, shard=s))
        last_answer = max(e["at"] for e in _events(d, "proposed", compute=False, shard=s))
        verifying = _one(d, "verifying", shard=s)["at"]
        verdict = min(e["at"] for e in _events(d, "results_accepted", compute=False, shard=s))
        done = _one(d, "shard_completed", shard=s)["at"]
        assert p.first_bid_s == pytest.approx(first_bid - announced)
        assert p.accepted_s == pytest.approx(closed - announced)
        assert p.runs_s == pytest.approx(last_answer - closed)
        assert p.verdict_s == pytest.approx(verdict - verifying)
        assert p.published_s == pytest.approx(done - _one(d, "publishing", shard=s)["at"])
        assert p.total_s == pytest.approx(done - created)
        assert p.attempts == 1
    waiting = jv.shard_phases(D["sharded_verdict"])
    assert all(p.verdict_s is None and p.total_s is None for p in waiting)
    ended = jv.shard_phases(D["split_error"])[0]
    assert ended.published_s is None
    assert ended.total_s == pytest.approx(
        _one(D["split_error"], "error")["at"] - created_of("split_error")
    )


def created_of(name: str) -> float:
    return float(D[name]["job"]["job"]["created_at"])


# -- gates ----------------------------------------------------------------------------------


def test_verdict_gate_with_agreement() -> None:
    (gate,) = jv.gate_summaries(D["step_verdict"])
    assert (gate.shard, gate.name, gate.action) == (0, "verdict", "announce the verdict")
    (group,) = gate.groups
    assert group.votes == 3 and group.accepted and set(group.nodes) == set(PEERS)
    assert set(gate.accepted) == set(PEERS) and gate.rejected == () and gate.failure is None


def test_verdict_gate_with_no_winner() -> None:
    (gate,) = jv.gate_summaries(D["split_verdict"])
    assert len(gate.groups) == 3
    assert all(g.votes == 1 and not g.accepted and len(g.nodes) == 1 for g in gate.groups)
    assert gate.accepted == ()
    assert {n for n, _ in gate.rejected} == set(PEERS)
    assert gate.failure == "3 proposals, 3 different results"


def test_publish_gates_of_a_sharded_job() -> None:
    gates = jv.gate_summaries(D["sharded_publish"])
    assert [(g.shard, g.name) for g in gates] == [(0, "publish"), (1, "publish"), (2, "publish")]
    final = {s["shard"]: s["cid"] for s in D["sharded_completed"]["shards"]}
    for gate in gates:
        assert gate.action == "publish"
        assert len(gate.results) == 2
        assert gate.to_publish == (final[gate.shard],)
    assert jv.gate_summaries(D["sharded_completed"]) == []


def test_gate_summaries_fall_back_on_the_single_gate() -> None:
    d = copy.deepcopy(D["step_verdict"])
    d["gates"] = []
    assert [g.name for g in jv.gate_summaries(d)] == ["verdict"]


# -- results and the job ----------------------------------------------------------------------


def test_shard_results() -> None:
    (done,) = jv.shard_results(D["step_completed"])
    assert done.cid == D["step_completed"]["shards"][0]["cid"]
    assert set(done.providers) == set(PEERS)
    assert done.stdout == "hello\n" and done.exit_code == 0 and done.verified
    (failed,) = jv.shard_results(D["split_error"])
    assert failed.cid is None and failed.providers == () and not failed.verified
    assert failed.stdout and failed.stdout.count("-") == 4  # a uuid a run proposed
    sharded = jv.shard_results(D["sharded_completed"])
    assert [r.shard for r in sharded] == [0, 1, 2]
    assert "/inputs/b3.txt" in (sharded[1].stdout or "")


def test_job_summary() -> None:
    s = jv.job_summary(D["sharded_completed"])
    assert s.state == "completed" and s.terminal and s.step
    assert s.command == "sh -c 'wc -l /inputs/*.txt'"
    assert (s.concurrency, s.confidence, s.verifier, s.publisher) == (2, 2, "deterministic", "ipfs")
    assert s.shards == 3 and s.sharding == "/inputs/*.txt, batch 2"
    assert s.inputs == ("bafybeiar63jncc22ktivr2vc6uvlrxmvl4exk7ogbfogbz66pbkeyiswpe:/inputs",)
    assert s.total_s == pytest.approx(s.updated_at - s.created_at)
    running = jv.job_summary(D["step_verdict"])
    assert running.state == "verifying" and not running.terminal and running.total_s is None
    error = jv.job_summary(D["split_error"])
    assert error.reason.startswith("verification accepted no result")


def test_names() -> None:
    assert jv.name_of(PEERS[1], NAMES) == "node-1"
    assert jv.name_of(PEERS[1]) == PEERS[1][-6:]
    assert jv.name_of("") == ""
    assert (
        jv.short_cid("bafybeibiolnvyanlusehn3mbhicnqhbyxgkcayr72gtdryyoirof6t63se") == "bafy…6t63se"
    )
    assert jv.short_cid("bafyshort") == "bafyshort"


# -- what the captures do not show --------------------------------------------------------------


def _event(kind: str, at: float, shard: int | None = 0, **detail: Any) -> dict[str, Any]:
    return {"job_id": "j", "kind": kind, "at": at, "node": "R", "shard": shard, "detail": detail}


def _describe(events: list[dict[str, Any]], **record: Any) -> dict[str, Any]:
    return {
        "job": {
            "job": {
                "id": "j",
                "requester": "R",
                "created_at": 100.0,
                "shards": 1,
                "spec": {"image": "busybox", "command": ["true"], "step": True},
            },
            "state": record.get("state", "completed"),
            "updated_at": record.get("updated_at", 120.0),
            "executions": [],
        },
        "requester": "R",
        "events": events,
        "shards": [{"shard": 0, "cid": None, "providers": [], "locations": []}],
    }


def test_a_rerun_starts_the_shard_again_on_fresh_nodes() -> None:
    d = _describe(
        [
            _event("created", 100.0, None),
            _event("announced", 100.5, None),
            _event("bid_accepted", 101.0, peer="A"),
            _event("bidding_closed", 101.0),
            _event("proposed", 103.0, peer="A", result_id="bafyA", run_ms=1500.0),
            _event("verifying", 103.5),
            _event("results_rejected", 104.0, peer="A", reason="differs"),
            _event("rerun", 104.5, attempt=1, reason="differs"),
            _event("bid_accepted", 105.5, peer="B"),
            _event("bidding_closed", 105.5),
            _event("proposed", 108.0, peer="B", result_id="bafyB", run_ms=2000.0),
            _event("verifying", 108.0),
            _event("results_accepted", 109.0, peer="B"),
            _event("publishing", 109.0),
            _event("published", 110.0, peer="B"),
            _event("shard_completed", 110.0),
            _event("completed", 110.5, None),
        ]
    )
    rows = jv.timeline(d)
    assert _row(rows, "rerun").took_s == pytest.approx(1.0)  # since verifying
    assert _row(rows, "bid_accepted", node="B").took_s == pytest.approx(1.0)  # since the rerun
    runs = {r.node: r for r in jv.run_phases(d)}
    assert runs["A"].bid_s == pytest.approx(0.5) and runs["A"].verdict_s == pytest.approx(0.5)
    assert runs["B"].bid_s == pytest.approx(1.0) and runs["B"].run_s == pytest.approx(2.0)
    assert runs["B"].published_s == pytest.approx(1.0)
    (phases,) = jv.shard_phases(d)
    assert phases.attempts == 2
    assert phases.first_bid_s == pytest.approx(1.0) and phases.accepted_s == pytest.approx(1.0)
    assert phases.runs_s == pytest.approx(2.5) and phases.verdict_s == pytest.approx(1.0)
    assert phases.total_s == pytest.approx(10.0)


def test_a_gate_event_times_its_stepped_event() -> None:
    d = _describe(
        [
            _event("created", 100.0, None),
            _event("verifying", 101.0),
            _event("gate", 101.25, gate="verdict"),
            _event("stepped", 104.0, gate="verdict"),
        ],
        state="verifying",
    )
    rows = jv.timeline(d)
    assert _row(rows, "gate").took_s == pytest.approx(0.25)
    assert _row(rows, "stepped").took_s == pytest.approx(2.75)


def test_an_empty_or_partial_answer_gives_no_figures() -> None:
    assert jv.timeline({}) == []
    assert jv.run_phases({}) == []
    assert jv.gate_summaries({}) == []
    assert jv.shard_results({}) == []
    assert [p.total_s for p in jv.shard_phases({})] == [None]
    summary = jv.job_summary({})
    assert summary.job_id == "" and summary.total_s is None and summary.concurrency is None
    # an event without a time is skipped, one without a shard is the job's
    d = _describe([_event("created", 100.0, None), {"kind": "announced", "detail": {}}])
    assert [r.kind for r in jv.timeline(d)] == ["created"]


def test_why_a_job_waits_reaches_the_job_views_header() -> None:
    d = _describe([_event("created", 100.0, None)], state="bidding")
    d["waiting"] = [{"shard": 0, "why": "queued: 5 of 5 nodes full, position 2 of 3"}]
    summary = jv.job_summary(d)
    assert summary.waiting == ("shard 0: queued: 5 of 5 nodes full, position 2 of 3",)
    shown = header_text(summary, {}, 101.0, job_id="j").plain
    assert "why shard 0: queued: 5 of 5 nodes full, position 2 of 3" in shown
    ended = jv.job_summary(
        _describe([_event("created", 100.0, None)], state="error") | {"waiting": d["waiting"]}
    )
    assert "why" not in header_text(ended, {}, 101.0, job_id="j").plain


# -- escalations and spot checks (hand-made, see tui_fake_checks) -------------------------------

CHECKS = tui_fake_checks.describes()
CHECK_NAMES = {
    tui_fake_checks.N0: "node-0",
    tui_fake_checks.N1: "node-1",
    tui_fake_checks.N2: "node-2",
}


def _at(describe: dict[str, Any], kind: str, **where: Any) -> float:
    return float(_one(describe, kind, **where)["at"])


def test_an_escalation_is_timed_and_told_like_a_rerun() -> None:
    d = CHECKS["escalated_completed"]
    n0, n2 = tui_fake_checks.N0, tui_fake_checks.N2
    rows = jv.timeline(d, CHECK_NAMES)
    escalated = _row(rows, "escalated")
    assert escalated.phase == "verdict" and escalated.node_name == "node-0"
    first_verifying, last_verifying = (e["at"] for e in _events(d, "verifying", compute=False))
    assert escalated.took_s == pytest.approx(_at(d, "escalated") - first_verifying)
    assert escalated.detail == f"+1 run (extra 1 of max 4) · {tui_fake_checks.BELOW}"
    # the extra run's bid counts from the escalation, its acceptance closes that bidding
    assert _row(rows, "bid_accepted", node=n2).took_s == pytest.approx(
        _at(d, "bid_accepted", peer=n2) - _at(d, "escalated")
    )
    accepted = _row(rows, "escalation_accepted")
    assert accepted.phase == "accepted"
    assert accepted.took_s == pytest.approx(_at(d, "escalation_accepted") - _at(d, "escalated"))
    last = [r for r in rows if r.kind == "verifying"][-1]
    assert last.took_s == pytest.approx(last_verifying - _at(d, "escalation_accepted"))
    assert "escalated" in escalated.search_text and "confidence needs 2" in escalated.search_text

    runs = {r.node: r for r in jv.run_phases(d, CHECK_NAMES)}
    assert runs[n2].bid_s == pytest.approx(_at(d, "bid_accepted", peer=n2) - _at(d, "escalated"))
    assert runs[n0].bid_s == pytest.approx(_at(d, "bid_accepted", peer=n0) - _at(d, "offered"))

    (phases,) = jv.shard_phases(d)
    counts = (phases.attempts, phases.extra_runs, phases.escalations, phases.spot_checks)
    assert counts == (1, 1, 1, 0)
    # the runs span the extra one; the verdict is the last verification's
    assert phases.runs_s == pytest.approx(_at(d, "proposed", peer=n2) - _at(d, "bidding_closed"))
    assert phases.verdict_s == pytest.approx(_at(d, "results_accepted", peer=n0) - last_verifying)
    shown = results_text(jv.shard_results(d), [phases], CHECK_NAMES, ended=True).plain
    assert "· +1 extra run (1 escalation)" in shown


def test_a_verdict_gate_that_asks_for_more_runs() -> None:
    (spot,) = jv.gate_summaries(CHECKS["checked_spot"])
    assert (spot.more, spot.why_more) == (1, tui_fake_checks.SPOT_WHY)
    assert spot.action == "run the shard on 1 more node"
    (gate,) = jv.gate_summaries(CHECKS["checked_escalate"])
    assert (gate.name, gate.more, gate.why_more) == ("verdict", 1, tui_fake_checks.DIFFER_WHY)
    assert gate.action == "run the shard on 1 more node"
    assert [(g.votes, g.accepted) for g in gate.groups] == [(2, False), (1, False)]
    assert gate.accepted == () and gate.rejected == () and gate.failure is None

    text = gate_text([gate], CHECK_NAMES, "enter").plain
    assert "enter opens it: run the shard on 1 more node" in text
    assert "? 2 votes" in text and "?  1 vote" in text and "✗" not in text
    assert f"asks for 1 more run on fresh nodes before its verdict: {gate.why_more}" in text
    assert "rejected" not in text and "no winner" not in text
    # a final verdict's gate (more 0) is as it was
    (final,) = jv.gate_summaries(D["split_verdict"])
    assert (
        final.more == 0
        and final.why_more is None
        and "asks for" not in gate_text([final], NAMES, "enter").plain
    )


def test_a_spot_check_then_the_end_for_want_of_fresh_nodes() -> None:
    d = CHECKS["checked_error"]
    rows = jv.timeline(d, CHECK_NAMES)
    gates = [r for r in rows if r.kind == "gate"]
    assert [g.detail for g in gates] == [
        "gate verdict · asks for 1 more run",
        "gate verdict · asks for 1 more run",
    ]
    spot = _row(rows, "spot_check")
    assert spot.phase == "verdict"
    assert spot.detail == f"+1 run (extra 1 of max 4) · {tui_fake_checks.SPOT_WHY}"
    first_verifying = _events(d, "verifying", compute=False)[0]["at"]
    assert spot.took_s == pytest.approx(spot.at - first_verifying)
    (phases,) = jv.shard_phases(d)
    assert (phases.extra_runs, phases.escalations, phases.spot_checks) == (1, 0, 1)
    assert jv.job_summary(d).reason == tui_fake_checks.NONE_LEFT


def test_extra_runs_count_per_attempt_and_tolerate_missing_fields() -> None:
    d = _describe(
        [
            _event("created", 100.0, None),
            _event("verifying", 101.0),
            _event("spot_check", 101.5, more=1, extra_runs=1, max_extra_runs=4, reason="spot"),
            _event("verifying", 103.0),
            _event("escalated", 103.5, more=2, extra_runs=3, max_extra_runs=4),
            _event("verifying", 105.0),
            _event("escalated", 105.5, more=1),  # an older requester's detail: no totals
        ],
        state="bidding",
    )
    (phases,) = jv.shard_phases(d)
    assert (phases.extra_runs, phases.escalations, phases.spot_checks) == (4, 2, 1)
    details = [r.detail for r in jv.timeline(d) if r.kind in jv.CHECK_KINDS]
    assert details == ["+1 run (extra 1 of max 4) · spot", "+2 runs (extra 3 of max 4)", "+1 run"]
    assert jv.extra_runs_text({}) == "+? runs"
    # a rerun starts a new attempt: its extra runs start from none
    d["job"]["job"]["created_at"] = 99.0
    d["events"].append(_event("rerun", 106.0, attempt=1))
    (phases,) = jv.shard_phases(d)
    assert (phases.attempts, phases.extra_runs, phases.escalations) == (2, 0, 0)
