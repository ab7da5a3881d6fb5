"""A requester's record of the nodes that ran its jobs (:mod:`node.credibility`):
counts, exclusion after being caught, ranking, and its persistence in the store."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.credibility import (
    EXCLUDE_S,
    TRUSTED_AFTER,
    Credibility,
    CredibilityStatistics,
    NodeRecord,
)
from node.models import Job, JobSpec, JobState
from node.store import _MIGRATIONS, SCHEMA_VERSION, Store

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0  # a wall-clock time; nothing here reads the clock


def test_a_node_without_a_verdict_is_new_and_not_excluded() -> None:
    cred = Credibility()
    assert cred.is_new("A")
    assert cred.of("A") == NodeRecord(0, 0, None)
    assert not cred.excluded("A", T0)
    assert cred.excluded_nodes(T0) == frozenset()
    assert cred.describe(T0) == {}
    assert cred.statistics(T0) == CredibilityStatistics(0, 0, 0, 0, 0)


def test_recording_a_verdict_counts_agreements_and_catches() -> None:
    cred = Credibility()
    rows = cred.record(["A", "B"], ["C"], T0)
    assert rows == [("A", 1, 0, None), ("B", 1, 0, None), ("C", 0, 1, T0)]
    assert not cred.is_new("A") and not cred.is_new("C")
    assert cred.of("A") == NodeRecord(agreed=1)
    assert cred.of("C") == NodeRecord(caught=1, caught_at=T0)
    # A later agreement keeps the time it was caught; a later catch moves it.
    assert cred.record(["C"], [], T0 + 10) == [("C", 1, 1, T0)]
    assert cred.record([], ["C"], T0 + 20) == [("C", 1, 2, T0 + 20)]
    assert cred.of("C").proposals == 3


def test_a_caught_node_is_excluded_for_exclude_s_then_not() -> None:
    cred = Credibility()
    cred.record(["A"], ["B"], T0)
    assert cred.excluded("B", T0)
    assert cred.excluded("B", T0 + EXCLUDE_S - 0.001)
    assert not cred.excluded("B", T0 + EXCLUDE_S)
    assert not cred.excluded("A", T0)
    assert cred.excluded_nodes(T0 + 1) == {"B"}
    assert cred.excluded_nodes(T0 + EXCLUDE_S) == frozenset()
    # Caught again later: excluded again, counted from the new catch.
    cred.record([], ["B"], T0 + EXCLUDE_S + 5)
    assert cred.excluded("B", T0 + 2 * EXCLUDE_S)
    assert not cred.excluded("B", T0 + 2 * EXCLUDE_S + 5)


def test_the_exclusion_lasts_what_the_requester_was_given() -> None:
    cred = Credibility(exclude_s=60)
    cred.record([], ["B"], T0)
    assert cred.excluded("B", T0 + 59)
    assert not cred.excluded("B", T0 + 60)
    assert cred.of("B").excluded_until(60) == T0 + 60
    never = Credibility(exclude_s=0)
    never.record([], ["B"], T0)
    assert not never.excluded("B", T0)


@pytest.mark.parametrize("exclude_s", [-1.0, -0.001, -EXCLUDE_S])
def test_a_negative_exclusion_is_refused(exclude_s: float) -> None:
    with pytest.raises(ValueError, match="exclude_s"):
        Credibility(exclude_s=exclude_s)


def test_rank_puts_the_never_caught_with_most_agreements_first_and_is_stable() -> None:
    cred = Credibility()
    for _ in range(3):
        cred.record(["good"], [], T0)
    cred.record(["fair", "also-fair"], [], T0)
    for _ in range(5):
        cred.record(["liar"], [], T0)  # many agreements, but caught once
    cred.record([], ["liar"], T0)
    cred.record([], ["worse", "worse"], T0)
    nodes = ["worse", "new-1", "liar", "fair", "new-2", "good", "also-fair"]
    assert cred.rank(nodes) == ["good", "fair", "also-fair", "new-1", "new-2", "liar", "worse"]
    # Ties keep the order they were given in.
    assert cred.rank(["new-2", "also-fair", "new-1", "fair"]) == [
        "also-fair",
        "fair",
        "new-2",
        "new-1",
    ]
    assert cred.rank([]) == []


def test_statistics_count_known_trusted_excluded_and_proposals() -> None:
    cred = Credibility()
    for _ in range(TRUSTED_AFTER):
        cred.record(["trusted", "twice-caught"], [], T0 - EXCLUDE_S - 100)
    cred.record(["almost"] * (TRUSTED_AFTER - 1), [], T0)
    cred.record([], ["twice-caught"], T0 - EXCLUDE_S - 50)  # no longer excluded
    cred.record([], ["twice-caught", "fresh-liar"], T0 - 1)
    assert cred.of("trusted").trusted
    assert not cred.of("almost").trusted
    assert not cred.of("twice-caught").trusted
    assert cred.statistics(T0) == CredibilityStatistics(
        known=4,
        trusted=1,
        excluded=2,
        agreed=2 * TRUSTED_AFTER + TRUSTED_AFTER - 1,
        caught=3,
    )
    assert cred.statistics(T0 + EXCLUDE_S).excluded == 0


def test_describe_gives_counts_and_the_end_of_a_current_exclusion() -> None:
    cred = Credibility()
    cred.record(["A"], ["B"], T0)
    cred.record(["B"], [], T0 + 1)
    expected = {
        "A": {"agreed": 1, "caught": 0, "excluded_until": None},
        "B": {"agreed": 1, "caught": 1, "excluded_until": T0 + EXCLUDE_S},
    }
    assert cred.describe(T0 + 1) == expected
    assert list(cred.describe(T0 + 1)) == ["A", "B"]
    # Once the exclusion is over, it is not shown.
    assert cred.describe(T0 + EXCLUDE_S)["B"] == {"agreed": 1, "caught": 1, "excluded_until": None}


def test_rows_rebuild_the_same_records() -> None:
    cred = Credibility()
    rows = [*cred.record(["A", "B"], ["C"], T0), *cred.record(["A"], ["B"], T0 + 5)]
    latest = {row[0]: row for row in rows}
    again = Credibility(latest.values())
    for node in "ABCD":
        assert again.of(node) == cred.of(node)
    assert again.statistics(T0 + 6) == cred.statistics(T0 + 6)


# A verdict: who agreed, who was caught, and how long after the previous one it came.
names = st.sampled_from(["A", "B", "C", "D", "E"])
verdicts = st.lists(
    st.tuples(
        st.lists(names, max_size=4),
        st.lists(names, max_size=3),
        st.floats(min_value=0, max_value=2 * EXCLUDE_S, allow_nan=False),
    ),
    max_size=25,
)


def _replay(story: list[tuple[list[str], list[str], float]]) -> tuple[Credibility, list, float]:
    cred, rows, at = Credibility(), [], T0
    for agreed, caught, gap in story:
        at += gap
        rows += cred.record(agreed, caught, at)
    return cred, rows, at


@given(verdicts)
def test_any_sequence_of_verdicts_is_counted_exactly(
    story: list[tuple[list[str], list[str], float]],
) -> None:
    cred, rows, now = _replay(story)
    last_caught: dict[str, float] = {}
    at = T0
    for _, caught, gap in story:
        at += gap
        last_caught.update((node, at) for node in caught)
    for node in "ABCDE":
        record = cred.of(node)
        assert record.agreed == sum(agreed.count(node) for agreed, _, _ in story)
        assert record.caught == sum(caught.count(node) for _, caught, _ in story)
        assert record.caught_at == last_caught.get(node)
        assert cred.is_new(node) == (record.proposals == 0)
        assert cred.excluded(node, now) == (
            node in last_caught and now < last_caught[node] + EXCLUDE_S
        )
    stats = cred.statistics(now)
    assert stats.agreed == sum(len(agreed) for agreed, _, _ in story)
    assert stats.caught == sum(len(caught) for _, caught, _ in story)
    assert stats.known == len({n for agreed, caught, _ in story for n in agreed + caught})
    assert stats.excluded == len(cred.excluded_nodes(now))
    # One row per proposal counted, the last of each node being its record.
    assert len(rows) == stats.agreed + stats.caught
    assert {row[0]: row[1:] for row in rows} == {
        node: (cred.of(node).agreed, cred.of(node).caught, cred.of(node).caught_at)
        for node in {row[0] for row in rows}
    }
    ranked = cred.rank(list("ABCDE"))
    keys = [(cred.of(n).caught, -cred.of(n).agreed) for n in ranked]
    assert keys == sorted(keys)


# -- persistence ------------------------------------------------------------------


def _same(a: Credibility, b: Credibility, nodes: str, at: float) -> None:
    for node in nodes:
        assert b.of(node) == a.of(node)
        assert b.excluded(node, at) == a.excluded(node, at)
    assert b.describe(at) == a.describe(at)
    assert b.statistics(at) == a.statistics(at)
    assert b.rank(list(nodes)) == a.rank(list(nodes))


def test_credibility_persists_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    cred = Credibility()
    with Store(db) as store:
        store.put_credibility(cred.record(["A", "B", "C"], [], T0))
        store.put_credibility(cred.record(["A", "B"], ["C"], T0 + 10))
        store.put_credibility(cred.record(["A", "C"], ["D"], T0 + 20))
        store.put_credibility(cred.record([], [], T0 + 30))  # nothing to write
    with Store(db) as reopened:
        rows = reopened.credibility()
    assert [row[0] for row in rows] == ["A", "B", "C", "D"]
    restarted = Credibility(rows)
    _same(cred, restarted, "ABCDE", T0 + 21)
    _same(cred, restarted, "ABCDE", T0 + 20 + EXCLUDE_S)
    assert restarted.excluded_nodes(T0 + 21) == {"C", "D"}
    assert restarted.excluded_nodes(T0 + 10 + EXCLUDE_S) == {"D"}
    assert restarted.of("A") == NodeRecord(agreed=3)
    assert restarted.of("C") == NodeRecord(agreed=2, caught=1, caught_at=T0 + 10)
    assert restarted.statistics(T0 + 21) == CredibilityStatistics(
        known=4, trusted=1, excluded=2, agreed=7, caught=2
    )


@given(verdicts)
@settings(max_examples=40, deadline=None)
def test_any_record_reads_back_the_same_after_a_restart(
    story: list[tuple[list[str], list[str], float]],
) -> None:
    cred, rows, now = _replay(story)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.sqlite"
        with Store(db) as store:
            store.put_credibility(rows)
        with Store(db) as reopened:
            restarted = Credibility(reopened.credibility())
    _same(cred, restarted, "ABCDE", now)


def test_a_version_1_store_gets_the_credibility_table_and_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.sqlite"
    job = Job(
        id="j1",
        requester="QmRequester",
        spec=JobSpec(image="busybox", command=["true"]),
        created_at=T0,
    )
    encoded = msgspec.json.encode(job).decode()
    conn = sqlite3.connect(db)
    try:
        for statement in _MIGRATIONS[0]:  # the tables of version 1, before credibility
            conn.execute(statement)
        conn.execute("PRAGMA user_version=1")
        conn.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.requester, "requester", encoded, "running", "", T0, T0),
        )
        conn.commit()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()

    assert SCHEMA_VERSION == 2
    with Store(db) as store:
        assert store.credibility() == []
        record = store.get_job("j1")
        assert record is not None and record.job == job and record.state is JobState.RUNNING
        store.put_credibility(Credibility().record(["A"], ["B"], T0))
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    with Store(db) as reopened:
        assert reopened.credibility() == [("A", 1, 0, None), ("B", 0, 1, T0)]
        assert reopened.statistics().jobs == 1
