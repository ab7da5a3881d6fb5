"""The pure parts of ``devstack bench byzantine`` (no cluster): each policy's job spec,
the ``--policies`` option, the requesters each policy gets and the order it submits
in, the honest result, and the per-policy tally and table, from hand-built describe
answers."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.bench.byzantine import (
    COMMAND,
    POLICIES,
    assign_requesters,
    byzantine_text,
    extra_runs,
    first_bad,
    honest_cid,
    policy_spec,
    submission_order,
    tally_policy,
    verdict_s,
)
from devstack.bench.harness import BenchError
from devstack.bench.options import BYZANTINE_POLICIES, policy_list
from devstack.state import NodeEntry
from node.models import Deal, validate_spec

pytestmark = pytest.mark.timeout(60)

REQ = "12D3KooWRequester"
HONEST = "bafyhonest"
FORGED = "bafyforged"
GOOD = ("12D3KooWGood1", "12D3KooWGood2", "12D3KooWGood3", "12D3KooWGood4")
BAD = frozenset({"12D3KooWBad1", "12D3KooWBad2"})
BAD1, BAD2 = sorted(BAD)


def ev(kind: str, at: float, shard: int | None = 0, **detail: Any) -> dict[str, Any]:
    return {"job_id": "j", "kind": kind, "at": at, "node": REQ, "shard": shard, "detail": detail}


def run(node: str, result_id: str | None, state: str = "published") -> dict[str, Any]:
    return {"node": node, "shard": 0, "state": state, "result_id": result_id}


def answer(
    state: str,
    events: list[dict[str, Any]] | None = None,
    runs: list[dict[str, Any]] | None = None,
    cid: str | None = None,
    concurrency: int = 3,
    created: float | None = 0.0,
) -> dict[str, Any]:
    """A describe answer: the job in ``state``, its ``runs``, its shard published as
    ``cid`` (none when None) and its ``events`` after its creation at ``created``."""
    born = [] if created is None else [ev("created", created, None, state="bidding")]
    return {
        "requester": REQ,
        "job": {
            "state": state,
            "job": {"id": "j", "spec": {"deal": {"concurrency": concurrency}}},
            "executions": list(runs or []),
        },
        "shards": [] if cid is None else [{"shard": 0, "cid": cid, "providers": []}],
        "events": [*born, *(events or [])],
    }


def accepted(at: float, *peers: str) -> list[dict[str, Any]]:
    return [ev("bid_accepted", at + k * 0.01, peer=peer) for k, peer in enumerate(peers)]


def node(index: int) -> NodeEntry:
    return NodeEntry(
        index=index,
        pid=0,
        started=0.0,
        peer_id=f"12D3KooWpeer{index}",
        multiaddr="",
        api=f"http://127.0.0.1:{9000 + index}",
        swarm_port=0,
        api_port=0,
        data_dir="",
        log_file="",
    )


# -- the policies --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", BYZANTINE_POLICIES)
def test_a_policys_spec_is_a_deterministic_noop_job_whose_deal_carries_the_policy(
    policy: str,
) -> None:
    spec = policy_spec(policy, 3)
    assert spec.engine == "noop"
    assert spec.verifier == "deterministic"
    assert spec.command == COMMAND
    assert spec.deal.concurrency == 3
    for field, value in POLICIES[policy].items():
        assert getattr(spec.deal, field) == value, field
    # Whatever the policy does not name stays the Deal's default.
    for field in set(Deal.__struct_fields__) - set(POLICIES[policy]) - {"concurrency"}:
        assert getattr(spec.deal, field) == getattr(Deal(), field), field
    assert validate_spec(spec) is spec


def test_every_policy_submits_the_same_command_so_honest_runs_agree() -> None:
    specs = [policy_spec(p, 5) for p in BYZANTINE_POLICIES]
    assert {tuple(s.command) for s in specs} == {tuple(COMMAND)}
    assert {s.deal.concurrency for s in specs} == {5}
    assert policy_spec("spot", 2) == policy_spec("spot", 2)


def test_the_policies_differ_as_the_readme_says() -> None:
    deals = {p: policy_spec(p, 3).deal for p in BYZANTINE_POLICIES}
    assert deals["majority"].margin == 1
    assert all(deals[p].margin == 2 for p in BYZANTINE_POLICIES if p != "majority")
    assert [p for p, d in deals.items() if d.spot_check > 0] == ["spot", "all"]
    assert [p for p, d in deals.items() if d.check_newcomers] == ["spot", "all"]
    assert [p for p, d in deals.items() if d.credibility] == ["credibility", "all"]


def test_the_policies_are_the_options_choices_in_order() -> None:
    assert tuple(POLICIES) == BYZANTINE_POLICIES


# -- --policies ----------------------------------------------------------------------------


def test_policy_list_takes_names_in_the_order_given() -> None:
    assert policy_list("spot") == ["spot"]
    assert policy_list(" all , majority,") == ["all", "majority"]
    assert policy_list(",".join(BYZANTINE_POLICIES)) == list(BYZANTINE_POLICIES)


@pytest.mark.parametrize("text", ["", " , ", "bogus", "spot,bogus", "spot,spot", "Spot"])
def test_policy_list_refuses_unknown_duplicate_or_no_names_and_names_the_choices(
    text: str,
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        policy_list(text)
    message = str(refused.value)
    assert all(name in message for name in BYZANTINE_POLICIES)
    assert repr(text) in message


@given(st.lists(st.sampled_from(BYZANTINE_POLICIES), min_size=1, max_size=5, unique=True))
def test_policy_list_reads_back_any_distinct_choice(names: list[str]) -> None:
    assert policy_list(",".join(names)) == names


# -- requesters and submission order -------------------------------------------------------


def test_each_policy_gets_requesters_of_its_own_in_order() -> None:
    got = assign_requesters([0, 2, 3, 5, 7, 8, 9], ["majority", "spot", "all"], 2)
    assert got == {"majority": [0, 2], "spot": [3, 5], "all": [7, 8]}


@given(
    st.lists(st.integers(0, 200), unique=True, max_size=40),
    st.lists(st.sampled_from(BYZANTINE_POLICIES), min_size=1, max_size=5, unique=True),
    st.integers(1, 6),
)
def test_requesters_are_disjoint_or_refused_when_too_few(
    honest: list[int], policies: list[str], per_policy: int
) -> None:
    if per_policy * len(policies) > len(honest):
        with pytest.raises(BenchError, match=f"{len(honest)}"):
            assign_requesters(honest, policies, per_policy)
        return
    got = assign_requesters(honest, policies, per_policy)
    assert list(got) == policies
    assert all(len(found) == per_policy for found in got.values())
    everyone = [i for found in got.values() for i in found]
    assert len(set(everyone)) == len(everyone)
    assert everyone == honest[: len(everyone)]


def test_too_few_honest_nodes_is_a_bench_error_naming_the_need() -> None:
    with pytest.raises(BenchError, match="need 10 honest nodes; the cluster has 9"):
        assign_requesters(list(range(9)), BYZANTINE_POLICIES, 2)


def test_one_round_takes_each_policy_in_turn_and_cycles_its_requesters() -> None:
    a, b, c = node(1), node(2), node(3)
    order = submission_order(["majority", "spot"], {"majority": [a], "spot": [b, c]})
    assert order == [("majority", a), ("spot", b), ("majority", a), ("spot", c)]


@given(
    st.lists(st.sampled_from(BYZANTINE_POLICIES), min_size=1, max_size=5, unique=True).flatmap(
        lambda policies: st.tuples(
            st.just(policies),
            st.lists(st.integers(1, 4), min_size=len(policies), max_size=len(policies)),
        )
    )
)
def test_a_round_gives_every_policy_the_same_share_and_each_of_its_requesters(
    drawn: tuple[list[str], list[int]],
) -> None:
    policies, counts = drawn
    nodes = iter(node(i) for i in range(sum(counts)))
    requesters = {p: [next(nodes) for _ in range(n)] for p, n in zip(policies, counts, strict=True)}
    order = submission_order(policies, requesters)
    rounds = max(counts)
    assert len(order) == rounds * len(policies)
    # The policies interleave: every stretch of len(policies) jobs has each once.
    for k in range(rounds):
        stretch = order[k * len(policies) : (k + 1) * len(policies)]
        assert [p for p, _ in stretch] == policies
    for policy in policies:
        mine = [n for p, n in order if p == policy]
        assert mine == [requesters[policy][k % len(requesters[policy])] for k in range(rounds)]
        assert {n.name for n in mine} == {n.name for n in requesters[policy]}


# -- the honest result ---------------------------------------------------------------------


def test_the_honest_cid_is_the_most_common_among_the_honest_runs() -> None:
    # The bad actors collude, and outnumber the honest runs of this job.
    outvoted = answer(
        "completed",
        runs=[run(BAD1, FORGED), run(BAD2, FORGED), run(GOOD[0], HONEST)],
    )
    honest_only = answer("completed", runs=[run(GOOD[1], HONEST), run(GOOD[2], HONEST)])
    assert honest_cid([outvoted, honest_only], BAD) == HONEST
    assert honest_cid([outvoted], BAD) == HONEST


def test_the_honest_cid_ignores_unreadable_answers_and_runs_without_a_result() -> None:
    pending = answer(
        "running",
        runs=[run(GOOD[0], None, "accepted"), run(GOOD[1], "", "error"), run(GOOD[2], HONEST)],
    )
    assert honest_cid([None, pending, None], BAD) == HONEST
    assert honest_cid([None], BAD) is None
    assert honest_cid([], BAD) is None
    only_bad = answer("completed", runs=[run(BAD1, FORGED), run(GOOD[0], None, "accepted")])
    assert honest_cid([only_bad], BAD) is None


def test_an_honest_node_that_disagrees_is_outvoted_by_the_other_honest_nodes() -> None:
    odd = answer(
        "completed",
        runs=[run(GOOD[0], "bafyodd"), run(GOOD[1], HONEST), run(GOOD[2], HONEST)],
    )
    assert honest_cid([odd], frozenset()) == HONEST


# -- one job's figures ---------------------------------------------------------------------


def test_extra_runs_add_escalations_spot_checks_and_a_concurrency_per_rerun() -> None:
    job = answer(
        "completed",
        [
            ev("escalated", 2.0, more=2, first=list(GOOD[:3])),
            ev("escalated", 3.0, more=1, first=list(GOOD[:3])),
            ev("spot_check", 1.0, more=1, first=list(GOOD[:3])),
            ev("rerun", 4.0, state="bidding"),
            # The requester's own compute step logs with a role: not the job's.
            ev("escalated", 2.5, more=7, role="compute"),
            ev("rerun", 4.5, role="compute"),
        ],
    )
    assert extra_runs(job, 3) == 2 + 1 + 1 + 3
    assert extra_runs(job, 5) == 2 + 1 + 1 + 5


def test_a_job_without_checks_ran_no_extra_runs() -> None:
    plain = answer("completed", [*accepted(0.5, *GOOD[:3]), ev("publishing", 2.0)])
    assert extra_runs(plain, 3) == 0
    assert extra_runs(answer("running", created=None), 3) == 0


def test_an_escalation_without_more_adds_nothing() -> None:
    assert extra_runs(answer("completed", [ev("escalated", 1.0)]), 3) == 0


def test_the_verdict_is_the_first_publishing_after_creation() -> None:
    job = answer(
        "completed",
        [ev("publishing", 4.5), ev("publishing", 2.5, shard=1), ev("completed", 5.0, None)],
        created=1.0,
    )
    assert verdict_s(job) == pytest.approx(1.5)


def test_a_job_that_ended_in_error_has_its_verdict_at_the_error() -> None:
    job = answer("error", [ev("error", 7.0, None, reason="no fresh node")], created=2.0)
    assert verdict_s(job) == pytest.approx(5.0)


def test_an_open_job_or_one_without_its_creation_has_no_verdict() -> None:
    assert verdict_s(answer("running", accepted(1.0, *GOOD[:3]))) is None
    assert verdict_s(answer("completed", [ev("publishing", 3.0)], created=None)) is None


def test_a_role_events_publishing_is_not_the_jobs_verdict() -> None:
    job = answer("running", [ev("publishing", 3.0, role="compute")])
    assert verdict_s(job) is None


def test_an_unreachable_bidder_is_not_the_jobs_verdict() -> None:
    # The requester records "error" with the peer when a bid acceptance never reached
    # its bidder (node/requester.py, _accept_bid): the job goes on bidding.
    job = answer(
        "running",
        [*accepted(1.0, GOOD[0]), ev("error", 1.5, peer=GOOD[0], reason="could not reach")],
    )
    assert verdict_s(job) is None


def test_first_bad_counts_the_bad_actors_the_first_escalation_names() -> None:
    job = answer(
        "completed",
        [
            *accepted(0.5, GOOD[0], BAD1, BAD2, GOOD[1], GOOD[2]),
            ev("escalated", 2.0, more=2, first=[BAD1, BAD2, GOOD[0]]),
            ev("escalated", 3.0, more=1, first=[GOOD[0], GOOD[1], GOOD[2]]),
        ],
    )
    assert first_bad(job, BAD) == 2
    # A spot check names the first runs too.
    spot = answer("completed", [ev("spot_check", 2.0, more=1, first=[BAD1, GOOD[0], GOOD[1]])])
    assert first_bad(spot, BAD) == 1


def test_first_bad_without_an_escalation_counts_the_first_concurrency_accepted() -> None:
    job = answer(
        "completed",
        [*accepted(0.5, GOOD[0], BAD1, GOOD[1], BAD2), ev("publishing", 3.0)],
        concurrency=3,
    )
    assert first_bad(job, BAD) == 1
    # Events come in any order: the oldest acceptances are the first runs.
    job["events"].reverse()
    assert first_bad(job, BAD) == 1
    assert first_bad(answer("completed", accepted(0.5, BAD2, BAD1), concurrency=2), BAD) == 2
    assert first_bad(answer("running", concurrency=3), BAD) == 0


def test_first_bad_with_no_bad_actors_is_zero() -> None:
    job = answer("completed", [ev("escalated", 2.0, more=2, first=[BAD1, BAD2, GOOD[0]])])
    assert first_bad(job, frozenset()) == 0


# -- a policy's tally ----------------------------------------------------------------------


def honest_job(at: float = 0.0, seconds: float = 1.0) -> dict[str, Any]:
    return answer(
        "completed",
        [*accepted(at + 0.1, *GOOD[:3]), ev("publishing", at + seconds)],
        runs=[run(g, HONEST) for g in GOOD[:3]],
        cid=HONEST,
        created=at,
    )


def forged_job() -> dict[str, Any]:
    """Two colluding bad actors outvote one honest run under a plain majority."""
    return answer(
        "completed",
        [*accepted(0.1, BAD1, BAD2, GOOD[0]), ev("publishing", 2.0)],
        runs=[run(BAD1, FORGED), run(BAD2, FORGED), run(GOOD[0], HONEST)],
        cid=FORGED,
    )


def escalated_job() -> dict[str, Any]:
    """One bad actor disagrees and one more honest run settles it at a margin of 2,
    after a re-run of the shard."""
    return answer(
        "completed",
        [
            *accepted(0.1, BAD1, GOOD[0], GOOD[1]),
            ev("escalated", 1.0, more=1, first=[BAD1, GOOD[0], GOOD[1]]),
            ev("rerun", 2.0, state="bidding"),
            ev("publishing", 4.0),
        ],
        cid=HONEST,
    )


def failed_job() -> dict[str, Any]:
    return answer(
        "error",
        [
            *accepted(0.1, BAD1, BAD2, GOOD[0]),
            ev("escalated", 1.0, more=2, first=[BAD1, BAD2, GOOD[0]]),
            ev("error", 3.0, None, reason="no fresh node"),
        ],
    )


def spot_checked_job() -> dict[str, Any]:
    return answer(
        "completed",
        [
            *accepted(0.1, *GOOD[:3]),
            ev("spot_check", 1.0, more=1, first=list(GOOD[:3])),
            ev("publishing", 2.0),
        ],
        cid=HONEST,
    )


def open_job() -> dict[str, Any]:
    return answer("running", accepted(0.1, GOOD[0], BAD1, GOOD[1]))


def test_the_tally_sorts_every_job_into_its_outcome() -> None:
    jobs = [honest_job(), forged_job(), escalated_job(), failed_job(), open_job(), None]
    got = tally_policy(jobs, BAD, HONEST, 3)
    assert got["jobs"] == 6
    assert (got["honest"], got["forged"], got["error"], got["open"]) == (2, 1, 1, 2)
    assert got["honest"] + got["forged"] + got["error"] + got["open"] == got["jobs"]


def test_a_completed_job_is_honest_only_if_every_shard_has_the_honest_cid() -> None:
    mixed = honest_job()
    mixed["shards"].append({"shard": 1, "cid": FORGED, "providers": []})
    none_published = answer("completed", [ev("publishing", 1.0)])
    got = tally_policy([mixed, none_published], BAD, HONEST, 3)
    assert (got["honest"], got["forged"]) == (0, 2)


def test_without_an_honest_cid_no_completed_job_counts_honest() -> None:
    got = tally_policy([honest_job()], BAD, None, 3)
    assert (got["honest"], got["forged"]) == (0, 1)


def test_the_tally_counts_extra_runs_and_checks() -> None:
    jobs = [honest_job(), escalated_job(), failed_job(), spot_checked_job(), None]
    got = tally_policy(jobs, BAD, HONEST, 3)
    # escalated: 1 + one re-run of c=3; failed: 2; spot-checked: 1.
    assert got["extra_runs"] == 4 + 2 + 1
    assert got["extra_runs_per_job"] == round(7 / 5, 3)
    assert (got["escalations"], got["spot_checks"], got["reruns"]) == (2, 1, 1)


def test_the_verdict_times_are_over_the_jobs_that_reached_one() -> None:
    jobs = [honest_job(10.0, s) for s in (1.0, 2.0, 3.0, 4.0)] + [open_job(), None]
    got = tally_policy(jobs, BAD, HONEST, 3)
    assert got["verdict_s"] == {"n": 4, "p50": 2.5, "p95": 3.85}


def test_the_histogram_counts_jobs_by_bad_actors_among_their_first_runs() -> None:
    jobs = [honest_job(), honest_job(), forged_job(), escalated_job(), failed_job(), None]
    got = tally_policy(jobs, BAD, HONEST, 3)
    assert got["first_runs_with_bad"] == {"0": 2, "1": 1, "2": 2}
    assert list(got["first_runs_with_bad"]) == ["0", "1", "2"]


def test_a_tally_of_no_jobs() -> None:
    got = tally_policy([], BAD, HONEST, 3)
    assert got["jobs"] == 0
    assert got["extra_runs"] == 0
    assert got["extra_runs_per_job"] is None
    assert got["verdict_s"] == {"n": 0, "p50": None, "p95": None}
    assert got["first_runs_with_bad"] == {}


def test_unreadable_answers_are_open_and_add_no_figures() -> None:
    got = tally_policy([None, None], BAD, HONEST, 3)
    assert (got["open"], got["jobs"], got["extra_runs"], got["extra_runs_per_job"]) == (
        2,
        2,
        0,
        0.0,
    )
    assert got["verdict_s"]["n"] == 0
    assert got["first_runs_with_bad"] == {}


@given(st.lists(st.sampled_from(["honest", "forged", "escalated", "failed", "open", "none"])))
def test_the_outcomes_always_add_up_to_the_jobs(kinds: list[str]) -> None:
    make = {
        "honest": honest_job,
        "forged": forged_job,
        "escalated": escalated_job,
        "failed": failed_job,
        "open": open_job,
        "none": lambda: None,
    }
    got = tally_policy([make[k]() for k in kinds], BAD, HONEST, 3)
    assert got["honest"] + got["forged"] + got["error"] + got["open"] == len(kinds)
    assert sum(got["first_runs_with_bad"].values()) == len(kinds) - kinds.count("none")
    assert got["honest"] == kinds.count("honest") + kinds.count("escalated")
    assert got["open"] == kinds.count("open") + kinds.count("none")


# -- the table -----------------------------------------------------------------------------


def result(**over: Any) -> dict[str, Any]:
    policies = {
        "majority": tally_policy([honest_job(), forged_job(), None], BAD, HONEST, 3),
        "all": tally_policy([open_job()], BAD, HONEST, 3),
    }
    return {
        "bench": "byzantine",
        "nodes": 12,
        "bad_actors": 2,
        "collude": True,
        "bad_actor_rate": 1.0,
        "concurrency": 3,
        "jobs_per_policy": 3,
        "rate": 10.0,
        "submit_s": 0.6,
        "refused": [],
        "refused_count": 0,
        "policies": policies,
        **over,
    }


def test_the_table_has_a_row_per_policy() -> None:
    text = byzantine_text(result())
    lines = text.splitlines()
    assert lines[0].startswith("byzantine: 12 nodes, 2 bad actors (colluding, forging all")
    assert "3 noop jobs of c=3 per policy at 10/s" in lines[0]
    assert lines[1].split()[:5] == ["policy", "honest", "forged", "error", "open"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert list(rows) == ["majority", "all"]
    #         honest forged error open extra/job escal. spot rerun verdict  0/1/2/3 bad
    assert rows["majority"][1:] == ["1", "1", "0", "1", "0.0", "0", "0", "0", "1.5/1.95", "1/0/1/0"]
    assert rows["all"][1:] == ["0", "0", "0", "1", "0.0", "0", "0", "0", "-", "0/1/0/0"]
    assert "submitted in 0.6s; refused: 0" in lines
    assert not any(line.startswith("left after down") for line in lines)


def test_the_table_says_how_the_bad_actors_forge() -> None:
    text = byzantine_text(result(collude=False, bad_actor_rate=0.25))
    assert "(each forging alone, forging 25% of their results)" in text


def test_the_table_lists_refusals_and_what_was_left_after_down() -> None:
    text = byzantine_text(
        result(
            refused=["spot on node-3: 503 busy"],
            refused_count=4,
            left_after_down={"processes": [101, 102], "containers": 0},
        )
    )
    lines = text.splitlines()
    assert "submitted in 0.6s; refused: 4" in lines
    assert "REFUSED: spot on node-3: 503 busy" in lines
    assert lines[-1] == "left after down: 2 node processes, 0 containers"


def test_the_table_when_the_containers_could_not_be_listed() -> None:
    text = byzantine_text(result(left_after_down={"processes": [], "containers": None}))
    assert text.splitlines()[-1] == "left after down: 0 node processes, None containers"
