"""The per-node SQLite store: round trips, atomicity, restart, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.models import (
    Execution,
    ExecutionState,
    Job,
    JobEvent,
    JobRecord,
    JobSpec,
    JobState,
)
from node.store import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    StoreStatistics,
    UnknownJobError,
)

pytestmark = pytest.mark.timeout(60)


def make_job(job_id: str, created_at: float = 1000.0, image: str = "busybox") -> Job:
    return Job(
        id=job_id,
        requester="QmRequester",
        spec=JobSpec(image=image, command=["echo", "hi"]),
        created_at=created_at,
    )


def ev(job_id: str, kind: str, at: float, **kwargs) -> JobEvent:
    return JobEvent(job_id=job_id, kind=kind, at=at, **kwargs)


def execution(job_id: str, shard: int, node: str, state: ExecutionState, at: float, **kw):
    return Execution(job_id=job_id, shard=shard, node=node, state=state, updated_at=at, **kw)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite"


@pytest.fixture
def store(db: Path):
    with Store(db) as s:
        yield s


def raw_count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# -- round trips ---------------------------------------------------------------


def test_put_get_list_round_trip(store: Store) -> None:
    job = make_job("j1")
    created = ev("j1", "created", 1000.5, node="QmRequester", detail={"shards": 1, "x": None})
    assert store.put_job(job, role="requester", state=JobState.CREATED, event=created)

    record = store.get_job("j1")
    assert record == JobRecord(job=job, state=JobState.CREATED, updated_at=1000.5)
    assert isinstance(record.state, JobState)
    assert store.events("j1") == [created]
    assert store.executions("j1") == []
    assert store.list_jobs() == [record]
    assert store.get_job("nope") is None
    assert store.events("nope") == []
    assert store.executions("nope") == []


def test_put_job_without_event_uses_now(store: Store) -> None:
    assert store.put_job(make_job("j1"), role="compute", state=JobState.BIDDING)
    record = store.get_job("j1")
    assert record is not None
    assert record.updated_at > 1_000_000  # wall clock, not the job's created_at
    assert store.events("j1") == []


def test_put_job_twice_returns_false_and_keeps_the_first(store: Store) -> None:
    first = make_job("j1", image="busybox")
    assert store.put_job(first, role="requester", state=JobState.CREATED, event=ev("j1", "a", 1))
    second = make_job("j1", created_at=2000.0, image="alpine")
    assert not store.put_job(second, role="compute", state=JobState.RUNNING, event=ev("j1", "b", 2))

    record = store.get_job("j1")
    assert record is not None
    assert record.job == first
    assert record.state is JobState.CREATED
    assert [e.kind for e in store.events("j1")] == ["a"]
    assert store.open_jobs("compute") == []
    stats = store.statistics()
    assert (stats.jobs, stats.events, stats.transactions) == (1, 1, 1)


def test_put_job_rejects_bad_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="role"):
        store.put_job(make_job("j1"), role="verifier", state=JobState.CREATED)
    with pytest.raises(ValueError, match="event is for job"):
        store.put_job(
            make_job("j1"), role="compute", state=JobState.CREATED, event=ev("j2", "x", 1)
        )
    assert store.list_jobs() == []


def test_record_updates_state_reason_executions_and_events(store: Store) -> None:
    store.put_job(make_job("j1"), role="requester", state=JobState.CREATED)
    written = [ev("j1", "bidding", 1001.0)]
    store.record(written[-1], state=JobState.BIDDING)

    written.append(ev("j1", "bid", 1002.0, node="n2", shard=0, detail={"score": 0.25}))
    store.record(written[-1], execution=execution("j1", 0, "n2", ExecutionState.BID, 1002.0))
    written.append(ev("j1", "bid", 1002.5, node="n1", shard=0))
    store.record(written[-1], execution=execution("j1", 0, "n1", ExecutionState.BID, 1002.5))
    written.append(ev("j1", "bid", 1002.7, node="n1", shard=1))
    store.record(written[-1], execution=execution("j1", 1, "n1", ExecutionState.BID, 1002.7))

    record = store.get_job("j1")
    assert record is not None
    assert record.state is JobState.BIDDING
    assert record.updated_at == 1001.0  # executions alone do not move the job's clock
    assert [(e.shard, e.node) for e in record.executions] == [(0, "n1"), (0, "n2"), (1, "n1")]

    done = execution(
        "j1",
        0,
        "n2",
        ExecutionState.PROPOSED,
        1010.0,
        result_id="bafy",
        result_url="http://x/y",
        exit_code=0,
        stdout_preview="hi\n",
    )
    written.append(ev("j1", "proposed", 1010.0, node="n2", shard=0))
    store.record(written[-1], state=JobState.VERIFYING, execution=done)
    written.append(ev("j1", "failed", 1011.0, detail={"why": "boom"}))
    store.record(written[-1], state=JobState.ERROR, reason="verification failed")
    # A later state without a reason keeps the reason.
    written.append(ev("j1", "cancelled", 1012.0))
    store.record(written[-1], state=JobState.CANCELLED)

    record = store.get_job("j1")
    assert record is not None
    assert record.state is JobState.CANCELLED
    assert record.reason == "verification failed"
    assert record.updated_at == 1012.0
    assert len(record.executions) == 3  # upserted, not appended
    assert record.executions[1] == done
    assert store.executions("j1") == record.executions
    assert store.events("j1") == written


def test_record_rejects_mismatched_arguments(store: Store) -> None:
    store.put_job(make_job("j1"), role="requester", state=JobState.CREATED)
    with pytest.raises(ValueError, match="reason"):
        store.record(ev("j1", "x", 1), reason="why")
    with pytest.raises(ValueError, match="execution is for job"):
        store.record(ev("j1", "x", 1), execution=execution("j2", 0, "n", ExecutionState.BID, 1.0))
    assert store.events("j1") == []


def test_record_unknown_job_raises_and_writes_nothing(store: Store, db: Path) -> None:
    store.put_job(make_job("j1"), role="requester", state=JobState.CREATED)
    before = store.statistics()
    with pytest.raises(UnknownJobError, match="'ghost'") as info:
        store.record(
            ev("ghost", "bid", 1.0),
            state=JobState.RUNNING,
            execution=execution("ghost", 0, "n", ExecutionState.BID, 1.0),
        )
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, KeyError)
    assert info.value.job_id == "ghost"
    assert raw_count(db, "events") == 0
    assert raw_count(db, "executions") == 0
    after = store.statistics()
    assert (after.events, after.transactions) == (before.events, before.transactions)


def test_record_is_atomic_when_sqlite_fails_midway(store: Store, db: Path) -> None:
    store.put_job(make_job("j1"), role="requester", state=JobState.CREATED)
    other = sqlite3.connect(db)
    other.execute(
        "CREATE TRIGGER no_bad BEFORE INSERT ON executions WHEN NEW.node = 'bad'"
        " BEGIN SELECT RAISE(ABORT, 'bad node'); END"
    )
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="bad node"):
        store.record(
            ev("j1", "bid", 5.0),
            state=JobState.RUNNING,
            reason="r",
            execution=execution("j1", 0, "bad", ExecutionState.BID, 5.0),
        )
    record = store.get_job("j1")
    assert record is not None
    assert (record.state, record.reason, record.executions) == (JobState.CREATED, "", [])
    assert store.events("j1") == []
    assert store.statistics().events == 0
    assert store.statistics().open_jobs == 1


# -- restart -------------------------------------------------------------------


def test_restarted_node_still_lists_and_describes_its_jobs(db: Path) -> None:
    with Store(db) as store:
        store.put_job(make_job("j1", 1.0), role="requester", state=JobState.CREATED)
        store.put_job(make_job("j2", 2.0), role="compute", state=JobState.BIDDING)
        store.record(ev("j1", "running", 3.0), state=JobState.RUNNING)
        store.record(
            ev("j1", "done", 4.0, node="n1", shard=0, detail={"exit": 0}),
            state=JobState.COMPLETED,
            execution=execution("j1", 0, "n1", ExecutionState.PUBLISHED, 4.0, exit_code=0),
        )
        jobs, events = store.list_jobs(), store.events("j1")
        stats = store.statistics()

    with Store(db) as reopened:
        fresh = reopened.statistics()
        assert (fresh.transactions, fresh.reads) == (0, 0)
        assert (fresh.jobs, fresh.open_jobs, fresh.events) == (
            stats.jobs,
            stats.open_jobs,
            stats.events,
        )
        assert reopened.list_jobs() == jobs
        assert reopened.get_job("j1") == jobs[1]
        assert reopened.events("j1") == events
        assert [r.job.id for r in reopened.open_jobs("compute")] == ["j2"]


def test_file_is_wal_and_versioned(store: Store, db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_newer_schema_on_disk_is_refused_naming_the_file(db: Path) -> None:
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer") as info:
        Store(db)
    assert str(db) in str(info.value)


def test_not_a_database_is_refused_naming_the_file(db: Path) -> None:
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as info:
        Store(db)
    assert str(db) in str(info.value)


def test_closed_store_raises_and_close_is_idempotent(db: Path) -> None:
    store = Store(db)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_jobs()
    with pytest.raises(StoreError, match="closed"):
        store.put_job(make_job("j"), role="compute", state=JobState.CREATED)
    assert store.statistics().jobs == 0


def test_an_older_schema_on_disk_is_migrated_to_this_one(db: Path) -> None:
    """A file left at schema version 1 (no ``credibility`` table) is brought up to
    date when opened; what it held stays readable."""
    with Store(db) as store:
        store.put_job(make_job("j1"), role="requester", state=JobState.CREATED)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE credibility")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    with Store(db) as store:
        assert store.get_job("j1") is not None
        assert store.credibility() == []
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


# -- queries -------------------------------------------------------------------


def test_open_jobs_excludes_terminal_ones(store: Store) -> None:
    for i, state in enumerate(JobState):
        store.put_job(make_job(f"r-{state}", float(i)), role="requester", state=state)
        store.put_job(make_job(f"c-{state}", float(i)), role="compute", state=state)
    expected = [f"r-{s}" for s in JobState if not s.terminal]
    assert [r.job.id for r in store.open_jobs("requester")] == expected
    assert all(r.state is not JobState.COMPLETED for r in store.open_jobs("compute"))
    assert store.statistics().open_jobs == 2 * len(expected)

    store.record(ev("r-running", "done", 99.0), state=JobState.COMPLETED)
    assert "r-running" not in [r.job.id for r in store.open_jobs("requester")]
    store.record(ev("r-completed", "retry", 99.0), state=JobState.RUNNING)
    assert "r-completed" in [r.job.id for r in store.open_jobs("requester")]
    assert store.statistics().open_jobs == 2 * len(expected)
    with pytest.raises(ValueError):
        store.open_jobs("nobody")


def test_list_jobs_ordering_and_filters(store: Store) -> None:
    store.put_job(make_job("b", 10.0), role="requester", state=JobState.RUNNING)
    store.put_job(make_job("a", 10.0), role="compute", state=JobState.COMPLETED)
    store.put_job(make_job("c", 5.0), role="compute", state=JobState.RUNNING)
    store.put_job(make_job("d", 20.0), role="requester", state=JobState.ERROR)

    def ids(**kw) -> list[str]:
        return [r.job.id for r in store.list_jobs(**kw)]

    assert ids() == ["d", "b", "a", "c"]  # created_at desc, then id desc
    assert ids(limit=2) == ["d", "b"]
    assert ids(limit=0) == []
    assert ids(role="compute") == ["a", "c"]
    assert ids(states={JobState.RUNNING}) == ["b", "c"]
    assert ids(states=[JobState.RUNNING, JobState.ERROR], role="requester") == ["d", "b"]
    assert ids(states=[]) == []
    with pytest.raises(ValueError):
        store.list_jobs(role="boss")
    with pytest.raises(ValueError):
        store.list_jobs(limit=-1)


def test_corrupt_rows_are_skipped_and_counted(store: Store, db: Path) -> None:
    store.put_job(make_job("good", 1.0), role="requester", state=JobState.CREATED)
    store.put_job(make_job("other", 3.0), role="requester", state=JobState.CREATED)
    store.record(ev("good", "ok", 2.0, detail={"k": 1}))
    store.record(ev("good", "bad", 3.0))
    store.record(
        ev("good", "ok2", 4.0), execution=execution("good", 0, "n", ExecutionState.BID, 4.0)
    )
    store.record(
        ev("good", "ok3", 4.0), execution=execution("good", 1, "n", ExecutionState.BID, 4.0)
    )
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO jobs VALUES ('broken', 'x', 'requester', '{not json', 'created', '', 2.0, 2.0)"
    )
    conn.execute("UPDATE jobs SET state = 'exploded' WHERE id = 'other'")
    conn.execute("UPDATE events SET detail = '[1, 2' WHERE kind = 'bad'")
    conn.execute("UPDATE executions SET state = 'weird' WHERE shard = 1")
    conn.commit()
    conn.close()

    assert [r.job.id for r in store.list_jobs()] == ["good"]
    assert [r.job.id for r in store.list_jobs(limit=1)] == ["good"]
    assert [e.kind for e in store.events("good")] == ["ok", "ok2", "ok3"]
    assert [x.shard for x in store.executions("good")] == [0]
    assert store.get_job("broken") is None
    assert store.statistics().corrupt_rows == 4
    store.list_jobs()  # seen again, counted once
    assert store.statistics().corrupt_rows == 4


# -- concurrency and statistics ------------------------------------------------


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    threads_n, per_thread = 8, 200
    for t in range(threads_n):
        store.put_job(make_job(f"j{t}", float(t)), role="compute", state=JobState.RUNNING)
    start = threading.Barrier(threads_n + 1)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                shared = ev("j0", f"t{t}", float(i), node=f"n{t}", detail={"i": i})
                store.record(shared)
                store.record(
                    ev(f"j{t}", "step", float(i), detail={"i": i}),
                    execution=execution(f"j{t}", 0, f"n{t}", ExecutionState.RUNNING, float(i)),
                )
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            start.wait()
            for _ in range(50):
                store.list_jobs()
                store.statistics()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    threads.append(threading.Thread(target=reader))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []

    shared = store.events("j0")
    # Every writer's events for j0, plus writer 0's own steps (j0 is its job too).
    assert len(shared) == threads_n * per_thread + per_thread
    for t in range(threads_n):
        mine = [e.detail["i"] for e in shared if e.kind == f"t{t}"]
        assert mine == list(range(per_thread))  # each writer's events in its own order
        own = store.events(f"j{t}")
        own_steps = [e.detail["i"] for e in own if e.kind == "step"]
        assert own_steps == list(range(per_thread))
        assert store.executions(f"j{t}")[0].updated_at == float(per_thread - 1)
    stats = store.statistics()
    assert stats.events == 2 * threads_n * per_thread
    assert stats.transactions == threads_n + 2 * threads_n * per_thread


def test_statistics_counts(db: Path) -> None:
    with Store(db) as store:
        assert store.statistics() == StoreStatistics(0, 0, 0, 0, 0, 0.0, 0)
        store.put_job(make_job("a"), role="compute", state=JobState.BIDDING, event=ev("a", "x", 1))
        store.put_job(make_job("a"), role="compute", state=JobState.BIDDING)  # no change
        store.put_job(make_job("b"), role="compute", state=JobState.COMPLETED)
        store.record(ev("a", "y", 2))
        store.record(ev("a", "z", 3), state=JobState.CANCELLED)
        store.get_job("a")
        store.list_jobs()
        store.events("a")
        store.executions("a")
        store.open_jobs("compute")
        stats = store.statistics()
        assert (stats.jobs, stats.open_jobs, stats.events) == (2, 0, 3)
        assert (stats.transactions, stats.reads, stats.corrupt_rows) == (4, 5, 0)
        assert stats.busy_seconds > 0
        with pytest.raises(AttributeError):
            stats.jobs = 3  # type: ignore[misc]


def test_lock_factory_is_used(db: Path) -> None:
    acquisitions = []

    class CountingLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def __enter__(self) -> None:
            self._lock.acquire()
            acquisitions.append(1)

        def __exit__(self, *exc: object) -> None:
            self._lock.release()

    with Store(db, lock_factory=CountingLock) as store:
        store.put_job(make_job("a"), role="compute", state=JobState.CREATED)
        store.get_job("a")
    assert len(acquisitions) >= 3  # put, get, close


# -- credibility -----------------------------------------------------------------


def test_put_credibility_replaces_each_nodes_record(store: Store, db: Path) -> None:
    assert store.credibility() == []
    store.put_credibility([("B", 1, 0, None), ("A", 0, 1, 5.0)])
    store.put_credibility([("B", 2, 1, 7.5)])
    store.put_credibility([])
    assert store.credibility() == [("A", 0, 1, 5.0), ("B", 2, 1, 7.5)]
    assert raw_count(db, "credibility") == 2
    # Rows of one call are written in order: the last row of a node wins.
    store.put_credibility([("C", 1, 0, None), ("C", 1, 1, 9.0)])
    assert store.credibility()[-1] == ("C", 1, 1, 9.0)
    stats = store.statistics()
    assert (stats.transactions, stats.reads) == (4, 3)
    assert (stats.jobs, stats.events) == (0, 0)


def test_put_credibility_writes_all_or_nothing(store: Store) -> None:
    store.put_credibility([("A", 1, 0, None)])
    with pytest.raises(StoreError):
        store.put_credibility([("B", 1, 0, None), ("C", None, 0, None)])  # NOT NULL
    assert store.credibility() == [("A", 1, 0, None)]


def test_credibility_of_a_closed_store_raises(db: Path) -> None:
    store = Store(db)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.credibility()
    with pytest.raises(StoreError, match="closed"):
        store.put_credibility([("A", 1, 0, None)])


# -- properties ----------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_detail = st.dictionaries(
    _text,
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _finite | _text,
    max_size=3,
)


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[JobEvent, JobState | None, str | None, Execution | None]]:
    steps = []
    for _ in range(draw(st.integers(0, 15))):
        shard = draw(st.none() | st.integers(0, 2))
        node = draw(st.sampled_from(["n1", "n2", "n3"]))
        event = JobEvent(
            job_id="job",
            kind=draw(_text),
            at=draw(_finite),
            node=node,
            shard=shard,
            detail=draw(_detail),
        )
        state = draw(st.none() | st.sampled_from(JobState))
        reason = draw(st.none() | _text) if state is not None else None
        exe = None
        if shard is not None and draw(st.booleans()):
            exe = Execution(
                job_id="job",
                shard=shard,
                node=node,
                state=draw(st.sampled_from(ExecutionState)),
                updated_at=draw(_finite),
                result_id=draw(st.none() | _text),
                exit_code=draw(st.none() | st.integers(-(2**31), 2**31)),
                stdout_preview=draw(st.none() | _text),
            )
        steps.append((event, state, reason, exe))
    return steps


def _merged(old: Execution | None, new: Execution) -> Execution:
    """A later step adds to what an earlier one recorded: None never erases a value."""
    if old is None:
        return new
    keep = ("result_id", "result_url", "exit_code", "stdout_preview", "reason")
    values = {f: getattr(new, f) if getattr(new, f) is not None else getattr(old, f) for f in keep}
    return msgspec.structs.replace(new, **values)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=_steps(), reopen_at=st.integers(0, 15))
def test_record_sequence_reads_back_what_was_written(
    tmp_path_factory: pytest.TempPathFactory, steps, reopen_at: int
) -> None:
    db = tmp_path_factory.mktemp("prop") / "jobs.sqlite"
    store = Store(db)
    try:
        store.put_job(make_job("job"), role="requester", state=JobState.CREATED)
        state, reason, updated_at = JobState.CREATED, "", None
        executions: dict[tuple[int, str], Execution] = {}
        for i, (event, new_state, new_reason, exe) in enumerate(steps):
            if i == reopen_at:
                store.close()
                store = Store(db)
            store.record(event, state=new_state, reason=new_reason, execution=exe)
            if new_state is not None:
                state, updated_at = new_state, event.at
                if new_reason is not None:
                    reason = new_reason
            if exe is not None:
                executions[(exe.shard, exe.node)] = _merged(
                    executions.get((exe.shard, exe.node)), exe
                )

        assert store.events("job") == [s[0] for s in steps]
        record = store.get_job("job")
        assert record is not None
        assert record.state is state
        assert record.reason == reason
        if updated_at is not None:
            assert record.updated_at == updated_at
        assert record.executions == [executions[k] for k in sorted(executions)]
        assert store.statistics().open_jobs == (0 if state.terminal else 1)
        assert store.statistics().events == len(steps)
    finally:
        store.close()


def test_every_write_is_committed_before_close(db: Path) -> None:
    """What a crashed node (never closed) wrote is visible to the next opener."""
    writer = Store(db)
    try:
        writer.put_job(make_job("j1"), role="requester", state=JobState.CREATED)
        writer.record(
            ev("j1", "bid", 2.0, node="n1", shard=0),
            state=JobState.BIDDING,
            execution=execution("j1", 0, "n1", ExecutionState.BID, 2.0),
        )
        with Store(db) as other:
            record = other.get_job("j1")
            assert record is not None
            assert record.state is JobState.BIDDING
            assert len(record.executions) == 1
            assert [e.kind for e in other.events("j1")] == ["bid"]
    finally:
        writer.close()
