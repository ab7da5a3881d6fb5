"""Owns a node's ``jobs.sqlite``: the event log of every job the node takes part in,
and the derived state (jobs, executions) kept in the same transaction as the event
that changed it.

One :class:`Store` holds one SQLite connection (WAL, ``synchronous=NORMAL``) guarded
by one lock, so it may be called from any thread (the node calls it from worker
threads via ``anyio.to_thread``). Every write is one transaction that commits before
the call returns, so a restarted node that opens the same file sees every job,
execution and event it had (README, persistence).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from node.models import Execution, ExecutionState, Job, JobEvent, JobRecord, JobState

log = logging.getLogger(__name__)

ROLES = ("requester", "compute")

# Bump when the schema changes and append the statements that migrate from the
# previous version to ``_MIGRATIONS``; ``_MIGRATIONS[v]`` takes a file from v to v+1.
SCHEMA_VERSION = 2

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY,
            requester TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('requester', 'compute')),
            job TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_created_at ON jobs (created_at, id)",
        """CREATE TABLE IF NOT EXISTS executions (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            shard INTEGER NOT NULL,
            node TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_at REAL NOT NULL,
            result_id TEXT,
            result_url TEXT,
            exit_code INTEGER,
            stdout_preview TEXT,
            reason TEXT,
            PRIMARY KEY (job_id, shard, node)
        )""",
        """CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            shard INTEGER,
            node TEXT NOT NULL,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS events_job_id ON events (job_id, seq)",
    ),
    # The requester's record of each node's proposals (node.credibility).
    (
        """CREATE TABLE IF NOT EXISTS credibility (
            node TEXT PRIMARY KEY,
            agreed INTEGER NOT NULL,
            caught INTEGER NOT NULL,
            caught_at REAL
        )""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_TERMINAL = tuple(s.value for s in JobState if s.terminal)
_NOT_TERMINAL_SQL = f"state NOT IN ({', '.join('?' * len(_TERMINAL))})"

_JOB_COLUMNS = "id, job, state, reason, updated_at"
_EXECUTION_COLUMNS = (
    "job_id, shard, node, state, updated_at, result_id, result_url, exit_code, "
    "stdout_preview, reason"
)

_Detail = dict[str, Any]
_job_decoder = msgspec.json.Decoder(Job)
_detail_decoder = msgspec.json.Decoder(_Detail)
_encoder = msgspec.json.Encoder()

# What a row that SQLite returns but we cannot turn back into a model raises.
_CORRUPT = (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError)

# SQLite's default bound on host parameters is 32766; stay far below it.
_IN_CHUNK = 500


class StoreError(Exception):
    """The store cannot do what was asked: the file is unusable, newer than this
    code, closed, or SQLite failed. The message names the file."""


class UnknownJobError(StoreError, KeyError):
    """An event or execution was recorded for a job the store does not hold."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"unknown job {job_id!r}")
        self.job_id = job_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class StoreStatistics:
    """A snapshot of a store's counters (kept in memory; cheap to take).

    ``jobs``, ``open_jobs`` and ``events`` are what the file holds (counted once at
    open, then kept up to date); ``transactions`` and ``reads`` count committed
    write transactions and read calls since open; ``busy_seconds`` is the time spent
    holding the lock doing SQL; ``corrupt_rows`` is how many distinct rows could not
    be decoded and were skipped.
    """

    jobs: int
    open_jobs: int
    events: int
    transactions: int
    reads: int
    busy_seconds: float
    corrupt_rows: int


class _Tx:
    """Counter deltas of one write transaction, applied only once it commits."""

    __slots__ = ("events", "jobs", "open_jobs")

    def __init__(self) -> None:
        self.jobs = 0
        self.open_jobs = 0
        self.events = 0


class _NoChange(Exception):
    """Raised inside a write transaction to roll it back without an error."""


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def _is_open(state: str) -> bool:
    return state not in _TERMINAL


class Store:
    """A node's job store on one SQLite file. Thread-safe; every method but
    :meth:`statistics` raises :class:`StoreError` once the store is closed or if
    SQLite fails (a failed write leaves the file as it was before the call)."""

    def __init__(
        self,
        path: Path,
        *,
        lock_factory: Callable[[], AbstractContextManager[Any]] = threading.Lock,
    ) -> None:
        """Open (creating if absent) the store at ``path``.

        Raises :class:`StoreError` naming the file if it cannot be opened, is not a
        SQLite database, or was written by a newer schema version than this code's.
        """
        self.path = Path(path)
        self._lock = lock_factory()
        self._corrupt: set[tuple[str, object]] = set()
        self._transactions = 0
        self._reads = 0
        self._busy = 0.0
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open job store: {exc}") from exc
        try:
            self._open(self._conn)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _open(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: job store has schema version {version}, newer than "
                    f"this code's {SCHEMA_VERSION}; upgrade py-bacalhau or use another "
                    "data dir"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Re-read under the write lock: another process may have migrated.
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    for statements in _MIGRATIONS[version:]:
                        for statement in statements:
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            self._jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            self._open_jobs = conn.execute(
                f"SELECT COUNT(*) FROM jobs WHERE {_NOT_TERMINAL_SQL}", _TERMINAL
            ).fetchone()[0]
            self._events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open job store: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; idempotent. Everything written is already committed."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- plumbing --------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock, time the SQL done under it, turn sqlite3 errors into
        :class:`StoreError`."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: job store is closed")
            start = time.perf_counter()
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc
            finally:
                self._busy += time.perf_counter() - start

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, _Tx]]:
        """One write transaction: committed if the body returns, rolled back if it
        raises; counters move only once it has committed."""
        with self._locked() as conn:
            tx = _Tx()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn, tx
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._transactions += 1
            self._jobs += tx.jobs
            self._open_jobs += tx.open_jobs
            self._events += tx.events

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._locked() as conn:
            self._reads += 1
            yield conn

    def _corrupt_row(self, table: str, key: object, exc: BaseException) -> None:
        if (table, key) not in self._corrupt:
            self._corrupt.add((table, key))
            log.warning("%s: skipping corrupt %s row %r: %s", self.path, table, key, exc)

    @staticmethod
    def _append(conn: sqlite3.Connection, tx: _Tx, event: JobEvent, detail: str) -> None:
        conn.execute(
            "INSERT INTO events (job_id, shard, node, kind, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (event.job_id, event.shard, event.node, event.kind, event.at, detail),
        )
        tx.events += 1

    # -- writes ----------------------------------------------------------------

    def put_job(
        self, job: Job, *, role: str, state: JobState, event: JobEvent | None = None
    ) -> bool:
        """Insert ``job`` in ``state`` for ``role`` if no job with its id is stored.

        Returns True if it was inserted (with ``event``, if given, appended in the
        same transaction; ``updated_at`` is ``event.at``, or now without an event),
        False if a job with that id is already stored (then nothing changes, and
        ``event`` is not appended). Raises ``ValueError`` for an unknown role or state
        or an event for another job, :class:`StoreError` if the write fails.
        """
        _check_role(role)
        state = JobState(state)
        if event is not None and event.job_id != job.id:
            raise ValueError(f"event is for job {event.job_id!r}, not {job.id!r}")
        blob = _encoder.encode(job).decode()
        detail = _encoder.encode(event.detail).decode() if event is not None else None
        updated_at = event.at if event is not None else time.time()
        try:
            with self._write() as (conn, tx):
                cur = conn.execute(
                    "INSERT INTO jobs (id, requester, role, job, state, reason, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, '', ?, ?) ON CONFLICT (id) DO NOTHING",
                    (job.id, job.requester, role, blob, state.value, job.created_at, updated_at),
                )
                if cur.rowcount == 0:
                    raise _NoChange
                tx.jobs += 1
                tx.open_jobs += _is_open(state.value)
                if event is not None and detail is not None:
                    self._append(conn, tx, event, detail)
        except _NoChange:
            return False
        return True

    def record(
        self,
        event: JobEvent,
        *,
        state: JobState | None = None,
        reason: str | None = None,
        execution: Execution | None = None,
    ) -> None:
        """In one transaction: append ``event``; if ``state`` is given, set the job's
        state (and ``reason``, if given) with ``updated_at = event.at``; if
        ``execution`` is given, insert or replace it by (job_id, shard, node).

        Either all of that is committed when this returns or none of it is. Raises
        :class:`UnknownJobError` (writing nothing) if ``event.job_id`` is not stored;
        ``ValueError`` for a ``reason`` without a ``state``, an unknown state, or an
        execution of another job; :class:`StoreError` if the write fails.
        """
        if reason is not None and state is None:
            raise ValueError("a reason is only recorded with a state")
        if state is not None:
            state = JobState(state)
        if execution is not None:
            if execution.job_id != event.job_id:
                raise ValueError(
                    f"execution is for job {execution.job_id!r}, event for {event.job_id!r}"
                )
            exec_state = ExecutionState(execution.state)
        detail = _encoder.encode(event.detail).decode()
        with self._write() as (conn, tx):
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (event.job_id,)).fetchone()
            if row is None:
                raise UnknownJobError(event.job_id)
            self._append(conn, tx, event, detail)
            if state is not None:
                if reason is None:
                    conn.execute(
                        "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?",
                        (state.value, event.at, event.job_id),
                    )
                else:
                    conn.execute(
                        "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                        (state.value, reason, event.at, event.job_id),
                    )
                tx.open_jobs += _is_open(state.value) - _is_open(row[0])
            if execution is not None:
                e = execution
                conn.execute(
                    f"INSERT INTO executions ({_EXECUTION_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (job_id, shard, node) DO UPDATE SET"
                    " state = excluded.state, updated_at = excluded.updated_at,"
                    # A later step adds to what an earlier one recorded, never erases it.
                    " result_id = COALESCE(excluded.result_id, result_id),"
                    " result_url = COALESCE(excluded.result_url, result_url),"
                    " exit_code = COALESCE(excluded.exit_code, exit_code),"
                    " stdout_preview = COALESCE(excluded.stdout_preview, stdout_preview),"
                    " reason = COALESCE(excluded.reason, reason)",
                    (
                        e.job_id,
                        e.shard,
                        e.node,
                        exec_state.value,
                        e.updated_at,
                        e.result_id,
                        e.result_url,
                        e.exit_code,
                        e.stdout_preview,
                        e.reason,
                    ),
                )

    # -- reads -----------------------------------------------------------------

    def _decode_execution(self, row: tuple[Any, ...]) -> Execution | None:
        job_id, shard, node, state, updated_at, *rest = row
        try:
            if not isinstance(updated_at, int | float):
                raise TypeError(f"updated_at is {updated_at!r}")
            return Execution(job_id, shard, node, ExecutionState(state), float(updated_at), *rest)
        except _CORRUPT as exc:
            self._corrupt_row("executions", (job_id, shard, node), exc)
            return None

    def _decode_job(self, row: tuple[Any, ...]) -> JobRecord | None:
        job_id, blob, state, reason, updated_at = row
        try:
            job = _job_decoder.decode(blob)
            if job.id != job_id:
                raise ValueError(f"row holds job {job.id!r}")
            if not isinstance(updated_at, int | float):
                raise TypeError(f"updated_at is {updated_at!r}")
            return JobRecord(job, JobState(state), float(updated_at), reason or "")
        except _CORRUPT as exc:
            self._corrupt_row("jobs", job_id, exc)
            return None

    def _executions_of(
        self, conn: sqlite3.Connection, job_ids: list[str]
    ) -> dict[str, list[Execution]]:
        found: dict[str, list[Execution]] = {job_id: [] for job_id in job_ids}
        for i in range(0, len(job_ids), _IN_CHUNK):
            chunk = job_ids[i : i + _IN_CHUNK]
            rows = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions"
                f" WHERE job_id IN ({', '.join('?' * len(chunk))}) ORDER BY job_id, shard, node",
                chunk,
            )
            for row in rows:
                execution = self._decode_execution(row)
                if execution is not None:
                    found[execution.job_id].append(execution)
        return found

    def _records(
        self, conn: sqlite3.Connection, sql: str, params: Collection[Any], limit: int | None
    ) -> list[JobRecord]:
        """Decode job rows (skipping corrupt ones) until ``limit`` good ones, then
        attach their executions."""
        records: list[JobRecord] = []
        for row in conn.execute(sql, tuple(params)):
            record = self._decode_job(row)
            if record is None:
                continue
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
        executions = self._executions_of(conn, [record.job.id for record in records])
        for record in records:
            record.executions = executions[record.job.id]
        return records

    def get_job(self, job_id: str) -> JobRecord | None:
        """The job with its state and executions (sorted by shard, then node), or
        None if it is not stored (or its row is corrupt: then it is counted in
        ``statistics().corrupt_rows``)."""
        with self._read() as conn:
            return next(
                iter(
                    self._records(
                        conn, f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,), 1
                    )
                ),
                None,
            )

    def list_jobs(
        self,
        *,
        limit: int = 100,
        states: Collection[JobState] | None = None,
        role: str | None = None,
    ) -> list[JobRecord]:
        """Up to ``limit`` jobs, newest first (by ``created_at``, then id, both
        descending), only those in ``states`` (if given; an empty collection matches
        none) and of ``role`` (if given). Corrupt rows are skipped and counted.
        Raises ``ValueError`` for a negative limit, unknown role or unknown state."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        if role is not None:
            _check_role(role)
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            values = sorted({JobState(s).value for s in states})
            if not values or limit == 0:
                return []
            where.append(f"state IN ({', '.join('?' * len(values))})")
            params.extend(values)
        if role is not None:
            where.append("role = ?")
            params.append(role)
        if limit == 0:
            return []
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC"
        with self._read() as conn:
            return self._records(conn, sql, params, limit)

    def open_jobs(self, role: str) -> list[JobRecord]:
        """Every job of ``role`` whose state is not terminal, oldest first (what a
        restarted node resumes). Corrupt rows are skipped and counted. Raises
        ``ValueError`` for an unknown role."""
        _check_role(role)
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE role = ? AND {_NOT_TERMINAL_SQL}"
            " ORDER BY created_at, id"
        )
        with self._read() as conn:
            return self._records(conn, sql, (role, *_TERMINAL), None)

    def events(self, job_id: str) -> list[JobEvent]:
        """The job's events in the order they were appended ([] for an unknown job).
        Corrupt rows are skipped and counted."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, job_id, shard, node, kind, at, detail FROM events"
                " WHERE job_id = ? ORDER BY seq",
                (job_id,),
            ).fetchall()
            events = []
            for seq, jid, shard, node, kind, at, detail in rows:
                try:
                    if not isinstance(at, int | float):
                        raise TypeError(f"at is {at!r}")
                    events.append(
                        JobEvent(jid, kind, float(at), node, shard, _detail_decoder.decode(detail))
                    )
                except _CORRUPT as exc:
                    self._corrupt_row("events", seq, exc)
            return events

    def executions(self, job_id: str) -> list[Execution]:
        """The job's executions sorted by shard, then node ([] for an unknown job).
        Corrupt rows are skipped and counted."""
        with self._read() as conn:
            return self._executions_of(conn, [job_id])[job_id]

    def providers(self, result_id: str) -> list[str]:
        """The nodes that published ``result_id`` in any job this store knows, sorted."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT node FROM executions WHERE result_id = ? AND state = ?"
                " ORDER BY node",
                (result_id, ExecutionState.PUBLISHED.value),
            ).fetchall()
        return [row[0] for row in rows]

    # -- credibility -----------------------------------------------------------

    def put_credibility(self, rows: Collection[tuple[str, int, int, float | None]]) -> None:
        """Store each node's record, ``(node, agreed, caught, caught_at)``, in one
        transaction, replacing what was stored for it."""
        with self._write() as (conn, _):
            conn.executemany(
                "INSERT INTO credibility (node, agreed, caught, caught_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (node) DO UPDATE SET"
                " agreed = excluded.agreed, caught = excluded.caught,"
                " caught_at = excluded.caught_at",
                list(rows),
            )

    def credibility(self) -> list[tuple[str, int, int, float | None]]:
        """Every node's stored record, ``(node, agreed, caught, caught_at)``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT node, agreed, caught, caught_at FROM credibility ORDER BY node"
            ).fetchall()
        return [(str(n), int(a), int(d), None if c is None else float(c)) for n, a, d, c in rows]

    # -- statistics ------------------------------------------------------------

    def statistics(self) -> StoreStatistics:
        """A snapshot of the counters; works after :meth:`close` too."""
        with self._lock:
            return StoreStatistics(
                jobs=self._jobs,
                open_jobs=self._open_jobs,
                events=self._events,
                transactions=self._transactions,
                reads=self._reads,
                busy_seconds=self._busy,
                corrupt_rows=len(self._corrupt),
            )
