"""Live output: what running containers print, on its way to whoever follows the job.

A line goes from a container's log (read by the executor, see
:mod:`node.executors.linetail`) into the compute node's :class:`RunOutput`, travels
in :class:`~node.messages.JobOutput` batches over the node's warm stream to the
job's requester, lands in that job's :class:`JobOutputLog` and is read from there by
``GET /api/v1/jobs/{id}/logs`` (README, Architecture: live output).

Every buffer on the way is bounded: when a run prints faster than its lines are
sent or read, the oldest lines go and the count of what went travels with the
lines that follow, so a chatty job never blocks its container nor grows a node's
memory. Both classes run on the node's trio loop only.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from node import messages
from node.messages import MAX_OUTPUT_BATCH, MAX_OUTPUT_LINE, OutputLine, OutputStream


class LineBatch(Protocol):
    """Lines a run printed, oldest first, and how many before them were skipped."""

    @property
    def lines(self) -> list[OutputLine]: ...
    @property
    def skipped(self) -> int: ...


#: Unsent lines a run keeps (and their characters) before it drops its oldest.
RUN_KEEP_LINES = 2000
RUN_KEEP_CHARS = 512 * 1024
#: Characters per batch sent: with msgpack's overhead, far below a message's cap.
BATCH_CHARS = 48 * 1024
#: A running shard sends its new lines at most this often.
SEND_EVERY_S = 0.25
#: Lines a requester keeps per execution (shard, node), and their characters.
EXECUTION_KEEP_LINES = 2000
EXECUTION_KEEP_CHARS = 512 * 1024
#: Ended jobs whose output a requester keeps (open jobs' output is always kept).
KEEP_ENDED_JOBS = 16
_CUT_MARK = " …[cut]"


def cut_line(text: str) -> str:
    """``text`` within :data:`~node.messages.MAX_OUTPUT_LINE` characters, marked
    when it was cut."""
    if len(text) <= MAX_OUTPUT_LINE:
        return text
    return text[: MAX_OUTPUT_LINE - len(_CUT_MARK)] + _CUT_MARK


@dataclass(frozen=True, slots=True)
class RunOutputStatistics:
    """``pending`` lines not sent yet (``pending_chars`` their size); ``lines`` seen
    since the run started; ``dropped`` of them lost before they were sent."""

    pending: int
    pending_chars: int
    lines: int
    dropped: int


class RunOutput:
    """One run's lines on the compute node, from the executor until they are sent.

    The executor either adds lines (:meth:`add`) or names a source that
    :meth:`pull` takes them from (:meth:`follow`: what its reading thread has
    gathered), as the sender's loop wants them.

    Holds at most :data:`RUN_KEEP_LINES` lines and :data:`RUN_KEEP_CHARS`
    characters: adding more drops the oldest. Lines the executor could not keep
    (it skipped them to keep up) and lines dropped here are counted, and the count
    goes out with the next batch (:meth:`take`).
    """

    def __init__(self, keep_lines: int = RUN_KEEP_LINES, keep_chars: int = RUN_KEEP_CHARS) -> None:
        if keep_lines < 1 or keep_chars < MAX_OUTPUT_LINE:
            raise ValueError("a run keeps at least one line of the longest length")
        self._keep_lines = keep_lines
        self._keep_chars = keep_chars
        self._pending: deque[OutputLine] = deque()
        self._chars = 0
        self._dropped_unsent = 0  # dropped since the last batch
        self._lines = 0
        self._dropped = 0
        self._source: Callable[[], LineBatch] | None = None

    def add(self, lines: Iterable[OutputLine], skipped: int = 0) -> None:
        """Keep ``lines`` (cut to the longest line allowed) and count ``skipped``
        lines the executor passed over as dropped."""
        self._drop(skipped)
        self._lines += skipped
        for line in lines:
            if len(line.line) > MAX_OUTPUT_LINE:
                line = OutputLine(line.stream, line.time, cut_line(line.line))
            self._pending.append(line)
            self._chars += len(line.line)
            self._lines += 1
        while len(self._pending) > self._keep_lines or self._chars > self._keep_chars:
            self._chars -= len(self._pending.popleft().line)
            self._drop(1)

    def follow(self, source: Callable[[], LineBatch] | None) -> None:
        """Take lines from ``source`` at each :meth:`pull` (None: no more)."""
        self._source = source

    def pull(self) -> None:
        """Add what the source followed has had since the last pull."""
        if self._source is not None:
            found = self._source()
            self.add(found.lines, found.skipped)

    def _drop(self, count: int) -> None:
        self._dropped_unsent += count
        self._dropped += count

    def lost(self, lines: list[OutputLine], dropped: int) -> None:
        """A batch :meth:`take` gave could not be sent: its lines count as dropped,
        and so, again, do those it said were (the next batch says it instead)."""
        self._drop(len(lines))
        self._dropped_unsent += dropped  # already in the total: dropped once

    def take(self) -> tuple[list[OutputLine], int]:
        """The oldest pending lines that fit one batch (:data:`BATCH_CHARS`,
        :data:`~node.messages.MAX_OUTPUT_BATCH` lines), and how many lines were
        dropped before them; ``([], 0)`` when there is nothing to send."""
        batch: list[OutputLine] = []
        chars = 0
        while self._pending and len(batch) < MAX_OUTPUT_BATCH:
            size = len(self._pending[0].line)
            if batch and chars + size > BATCH_CHARS:
                break
            batch.append(self._pending.popleft())
            chars += size
        self._chars -= chars
        dropped, self._dropped_unsent = self._dropped_unsent, 0
        return batch, dropped

    def statistics(self) -> RunOutputStatistics:
        return RunOutputStatistics(
            pending=len(self._pending),
            pending_chars=self._chars,
            lines=self._lines,
            dropped=self._dropped,
        )


class OutputSender:
    """Sends one run's :class:`RunOutput` to the job's requester as
    :class:`~node.messages.JobOutput` batches, in order, one at a time.

    ``send`` delivers a batch and says whether it was taken; the lines of one that
    was not count as dropped. :meth:`run` sends while the shard runs;
    :meth:`flush` sends what is left (call it once the run has returned, before
    the run's proposal or error, so the lines arrive first).
    """

    def __init__(
        self, job_id: str, shard: int, send: Callable[[messages.JobOutput], Awaitable[bool]]
    ) -> None:
        self.output = RunOutput()
        self._job_id = job_id
        self._shard = shard
        self._send = send
        self._lock = trio.Lock()  # one batch at a time: batches arrive in order
        self.sent = 0  # batches taken by the requester

    async def run(self) -> None:
        """Every :data:`SEND_EVERY_S`, pull what the run printed and send a batch,
        until cancelled."""
        while True:
            await trio.sleep(SEND_EVERY_S)
            self.output.pull()
            await self._send_one()

    async def flush(self) -> None:
        """Send every pending line."""
        while await self._send_one():
            pass

    async def _send_one(self) -> bool:
        """Send one batch; False when there was nothing to send."""
        async with self._lock:
            lines, dropped = self.output.take()
            if not lines and not dropped:
                return False
            batch = messages.JobOutput(
                job_id=self._job_id, shard=self._shard, lines=lines, dropped=dropped
            )
            # Shielded: a batch taken from the output is sent whole or counted as lost.
            with trio.CancelScope(shield=True):
                if await self._send(batch):
                    self.sent += 1
                    return True
            self.output.lost(lines, dropped)
            return False


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One entry of a job's output, as ``GET /api/v1/jobs/{id}/logs`` gives it: a
    line (``stream``, ``line``) or, with ``dropped`` > 0, how many lines of that
    execution were lost here."""

    seq: int  # order of arrival at the requester, over the whole job
    shard: int
    node: str
    time: float
    stream: OutputStream | None = None
    line: str = ""
    dropped: int = 0

    def document(self) -> dict[str, object]:
        """The record as the API's JSON: drop records have ``dropped`` and no line."""
        found: dict[str, object] = {
            "seq": self.seq,
            "shard": self.shard,
            "node": self.node,
            "time": self.time,
        }
        if self.dropped:
            found["dropped"] = self.dropped
        else:
            found["stream"] = self.stream
            found["line"] = self.line
        return found


@dataclass
class _Execution:
    """One (shard, node)'s kept records, each with the count of lines received up to
    and including it, so a reader that fell behind the kept window knows how many
    lines it missed."""

    records: deque[tuple[int, OutputRecord]] = field(default_factory=deque)
    received: int = 0  # lines, a drop record counting as the lines it stands for
    chars: int = 0
    lines: int = 0
    dropped: int = 0

    def first_kept(self) -> int:
        """The count of lines before the oldest record kept."""
        if not self.records:
            return self.received
        end, record = self.records[0]
        return end - (record.dropped or 1)


@dataclass(frozen=True, slots=True)
class OutputCursor:
    """Where one reader of a job's output is: how many lines of each execution it
    has had (or been told it missed). Made by :meth:`JobOutputLog.cursor`,
    moved by :meth:`JobOutputLog.read`."""

    next: dict[tuple[int, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobOutputLogStatistics:
    """``executions`` with output; ``lines`` received, ``dropped`` on the compute
    nodes before they were sent; ``kept`` records and their ``kept_chars``; ``ended``."""

    executions: int
    lines: int
    dropped: int
    kept: int
    kept_chars: int
    ended: bool


class JobOutputLog:
    """One job's output on its requester: per execution (shard, node) the latest
    :data:`EXECUTION_KEEP_LINES` records and :data:`EXECUTION_KEEP_CHARS`
    characters, readable by any number of readers, each with its own
    :class:`OutputCursor`. A reader behind the kept window gets a drop record
    saying how many it missed; a batch's own ``dropped`` becomes a drop record in
    place."""

    def __init__(
        self,
        keep_lines: int = EXECUTION_KEEP_LINES,
        keep_chars: int = EXECUTION_KEEP_CHARS,
    ) -> None:
        self._keep_lines = keep_lines
        self._keep_chars = keep_chars
        self._executions: dict[tuple[int, str], _Execution] = {}
        self._seq = itertools.count(1)
        self._changed = trio.Event()
        self.ended = False

    def add(self, shard: int, node: str, lines: Sequence[OutputLine], dropped: int = 0) -> None:
        """Keep a batch from ``node``'s run of ``shard`` (dropped lines first)."""
        execution = self._executions.setdefault((shard, node), _Execution())
        if dropped:
            at = lines[0].time if lines else 0.0
            self._keep(execution, OutputRecord(next(self._seq), shard, node, at, dropped=dropped))
            execution.dropped += dropped
        for line in lines:
            record = OutputRecord(
                next(self._seq), shard, node, line.time, line.stream, cut_line(line.line)
            )
            self._keep(execution, record)
            execution.lines += 1
        self._changed.set()
        self._changed = trio.Event()

    def _keep(self, execution: _Execution, record: OutputRecord) -> None:
        execution.received += record.dropped or 1
        execution.records.append((execution.received, record))
        execution.chars += len(record.line)
        while len(execution.records) > self._keep_lines or execution.chars > self._keep_chars:
            execution.chars -= len(execution.records.popleft()[1].line)

    def end(self) -> None:
        """The job ended: readers that follow it stop once they have read it all."""
        self.ended = True
        self._changed.set()

    def cursor(self) -> OutputCursor:
        """A cursor at the start of everything: the first read gives all that is kept
        (and how much was lost before it)."""
        return OutputCursor()

    def read(
        self,
        cursor: OutputCursor,
        *,
        shard: int | None = None,
        node: str | None = None,
        stream: OutputStream | None = None,
    ) -> list[OutputRecord]:
        """The records past ``cursor`` (which moves past them), in order of arrival,
        of the executions and stream asked for; a drop record, per execution, for
        records that left the kept window before this reader got them."""
        found: list[list[OutputRecord]] = []
        for key, execution in self._executions.items():
            if (shard is not None and key[0] != shard) or (node is not None and key[1] != node):
                continue
            had = cursor.next.get(key, 0)
            if had >= execution.received:
                continue
            mine: list[OutputRecord] = []
            first_kept = execution.first_kept()
            if first_kept > had:
                seq = execution.records[0][1].seq if execution.records else 0
                missed = first_kept - had
                mine.append(OutputRecord(seq, key[0], key[1], 0.0, dropped=missed))
            for end, record in execution.records:
                if end <= had:
                    continue
                if stream is None or record.dropped or record.stream == stream:
                    mine.append(record)
            cursor.next[key] = execution.received
            found.append(mine)
        return list(heapq.merge(*found, key=lambda record: record.seq))

    async def wait(self) -> None:
        """Return once a batch arrives or the job ends (at once if it has ended)."""
        if not self.ended:
            await self._changed.wait()

    def statistics(self) -> JobOutputLogStatistics:
        executions = self._executions.values()
        return JobOutputLogStatistics(
            executions=len(self._executions),
            lines=sum(e.lines for e in executions),
            dropped=sum(e.dropped for e in executions),
            kept=sum(len(e.records) for e in executions),
            kept_chars=sum(e.chars for e in executions),
            ended=self.ended,
        )


@dataclass(frozen=True, slots=True)
class OutputStoreStatistics:
    """Jobs whose output is kept (``open`` and ended), and the records and
    characters kept over all of them."""

    jobs: int
    open: int
    kept: int
    kept_chars: int


class OutputStore:
    """A requester's :class:`JobOutputLog` per job: every open job's, and the last
    :data:`KEEP_ENDED_JOBS` ended ones (the oldest ended is forgotten first)."""

    def __init__(self, keep_ended: int = KEEP_ENDED_JOBS) -> None:
        self._keep_ended = keep_ended
        self._jobs: OrderedDict[str, JobOutputLog] = OrderedDict()

    def open(self, job_id: str) -> JobOutputLog:
        """The output of ``job_id``, made empty the first time."""
        found = self._jobs.get(job_id)
        if found is None:
            found = self._jobs[job_id] = JobOutputLog()
        return found

    def get(self, job_id: str) -> JobOutputLog | None:
        return self._jobs.get(job_id)

    def end(self, job_id: str) -> None:
        """``job_id`` ended: its output is kept among the ended ones, and readers that
        follow it stop."""
        found = self._jobs.get(job_id)
        if found is None:
            return
        found.end()
        self._jobs.move_to_end(job_id)
        ended = [job for job, output in self._jobs.items() if output.ended]
        for job in ended[: max(0, len(ended) - self._keep_ended)]:
            del self._jobs[job]

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    def statistics(self) -> OutputStoreStatistics:
        figures = [output.statistics() for output in self._jobs.values()]
        return OutputStoreStatistics(
            jobs=len(figures),
            open=sum(not f.ended for f in figures),
            kept=sum(f.kept for f in figures),
            kept_chars=sum(f.kept_chars for f in figures),
        )
