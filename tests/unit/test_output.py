"""Live output without a network: the line tail of a running container
(node/executors/linetail.py),
the compute side's bounded run buffer and sender, the requester's per-execution log
and its readers' cursors (node/output.py), and the JobOutput message's limits."""

from __future__ import annotations

import json

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node import messages
from node.executors.linetail import LineTail, LogRead
from node.messages import MAX_MESSAGE_BYTES, MAX_OUTPUT_LINE, OutputLine
from node.output import (
    BATCH_CHARS,
    JobOutputLog,
    OutputSender,
    OutputStore,
    RunOutput,
    cut_line,
)

pytestmark = pytest.mark.timeout(60)

_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
    max_size=40,
)


def _entry(text: str, stream: str = "stdout", newline: bool = True) -> bytes:
    document = {
        "log": text + ("\n" if newline else ""),
        "stream": stream,
        "time": "2026-12-07T15:57:00.123456789Z",
    }
    return json.dumps(document).encode() + b"\n"


def _line(text: str, stream: messages.OutputStream = "stdout", at: float = 1.0) -> OutputLine:
    return OutputLine(stream, at, text)


# -- the line tail of a running container -------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    lines=st.lists(st.tuples(_texts, st.sampled_from(["stdout", "stderr"])), max_size=60),
    cuts=st.lists(st.integers(min_value=1, max_value=30), max_size=80),
    takes=st.sets(st.integers(min_value=0, max_value=80)),
    keep=st.integers(min_value=1, max_value=20),
)
def test_every_line_is_taken_or_counted_once_and_the_newest_are_kept(
    lines: list[tuple[str, str]], cuts: list[int], takes: set[int], keep: int
) -> None:
    """However a stream is cut into pieces and whenever the lines are taken, each
    line (each newline) is either taken, whole and in order, or counted as skipped
    once; a take returns at most ``keep`` lines, the newest fed by then."""
    tail = LineTail(keep, max_bytes=10**6, clock=lambda: 1.0)
    streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    for text, stream in lines:
        streams[stream] += text.encode() + b"\n"
    split: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    sizes = iter(cuts)
    for stream, data in streams.items():
        while data:
            size = next(sizes, 7)
            split[stream].append(data[:size])
            data = data[size:]
    # Interleave the streams' pieces, each stream's in order, as a container's would be.
    pieces: list[tuple[str, bytes]] = []
    turn = iter(cuts)
    while split["stdout"] or split["stderr"]:
        stream = "stdout" if not split["stderr"] or next(turn, 0) % 2 else "stderr"
        stream = stream if split[stream] else "stderr"
        pieces.append((stream, split[stream].pop(0)))
    got: dict[str, list[str]] = {"stdout": [], "stderr": []}
    skipped = 0
    fed = 0
    for step, (stream, data) in enumerate(pieces):
        tail.feed(stream, data)  # type: ignore[arg-type]
        fed += data.count(b"\n")
        if step in takes:
            found = tail.take()
            assert len(found.lines) <= keep
            skipped += found.skipped
            for line in found.lines:
                got[line.stream].append(line.line)
    found = tail.take(final=True)
    skipped += found.skipped
    for line in found.lines:
        got[line.stream].append(line.line)
    assert sum(map(len, got.values())) + skipped == len(lines) == fed
    if skipped == 0:  # nothing passed over: every line whole, in order
        for stream in ("stdout", "stderr"):
            assert got[stream] == [text for text, s in lines if s == stream]


def test_a_line_over_several_pieces_is_joined_and_an_unfinished_last_line_is_final() -> None:
    tail = LineTail(10, clock=lambda: 5.0)
    tail.feed("stdout", b"first ha")
    tail.feed("stderr", b"err\n")
    tail.feed("stdout", b"lf\nno newline")
    found = tail.take()
    assert [(line.stream, line.line) for line in found.lines] == [
        ("stderr", "err"),
        ("stdout", "first half"),
    ]
    assert [line.line for line in tail.take(final=True).lines] == ["no newline"]
    assert found.lines[0].time == 5.0
    with pytest.raises(ValueError, match="keep"):
        LineTail(0)


def test_a_flood_is_counted_without_splitting_it() -> None:
    """Many pieces between two takes: only the newest lines are kept and split."""
    tail = LineTail(7)
    piece = b"x" * 70 + b"\n"
    for _ in range(10_000):
        tail.feed("stdout", piece * 50)
    found = tail.take()
    assert len(found.lines) == 7
    assert found.skipped == 500_000 - 7
    assert tail.take() == LogRead()


def test_a_long_line_is_cut_and_one_that_outgrows_the_bound_is_counted() -> None:
    tail = LineTail(3, max_bytes=1 << 16)
    for _ in range(5):
        tail.feed("stdout", b"y" * 10_000)
    tail.feed("stdout", b"\n")
    found = tail.take()
    assert [len(line.line) for line in found.lines] == [MAX_OUTPUT_LINE]
    for _ in range(100):  # 1 MB without a newline: its start is let go
        tail.feed("stdout", b"z" * 10_000)
    tail.feed("stdout", b"\nafter\n")
    found = tail.take(final=True)
    assert found == LogRead([OutputLine("stdout", found.lines[0].time, "after")], skipped=1)


# -- the compute side ---------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    adds=st.lists(
        st.tuples(st.lists(st.integers(0, 3000), max_size=30), st.integers(0, 50)), max_size=12
    ),
    keep_lines=st.integers(1, 40),
)
def test_a_run_keeps_its_bounds_and_accounts_for_every_line(
    adds: list[tuple[list[int], int]], keep_lines: int
) -> None:
    output = RunOutput(keep_lines=keep_lines, keep_chars=2 * MAX_OUTPUT_LINE)
    sent = dropped = total = 0
    for sizes, skipped in adds:
        output.add([_line("y" * size) for size in sizes], skipped)
        total += len(sizes) + skipped
        figures = output.statistics()
        assert figures.pending <= keep_lines
        assert figures.pending_chars <= 2 * MAX_OUTPUT_LINE
        batch, lost = output.take()
        assert sum(len(line.line) for line in batch) <= max(BATCH_CHARS, MAX_OUTPUT_LINE)
        sent += len(batch)
        dropped += lost
    while True:
        batch, lost = output.take()
        if not batch and not lost:
            break
        sent += len(batch)
        dropped += lost
    assert sent + dropped == total == output.statistics().lines


def test_a_long_line_is_cut_and_a_full_batch_fits_a_message() -> None:
    output = RunOutput()
    output.add([_line("z" * (MAX_OUTPUT_LINE * 3))] * 100)
    batch, dropped = output.take()
    assert dropped == 0
    assert all(len(line.line) == MAX_OUTPUT_LINE for line in batch)
    assert batch[0].line.endswith(cut_line("z" * (MAX_OUTPUT_LINE + 1))[-10:])
    message = messages.JobOutput(job_id="j", shard=0, lines=batch)
    assert len(messages.encode(message)) < MAX_MESSAGE_BYTES
    assert messages.decode(messages.encode(message)) == message


def test_a_batch_that_breaks_its_limits_is_malformed() -> None:
    too_long = msgspec.msgpack.encode(
        {"type": "JobOutput", "job_id": "j", "lines": [["stdout", 1.0, "x" * 5000]]}
    )
    with pytest.raises(messages.MessageError):
        messages.decode(too_long)
    bad_stream = msgspec.msgpack.encode(
        {"type": "JobOutput", "job_id": "j", "lines": [["stdin", 1.0, "x"]]}
    )
    with pytest.raises(messages.MessageError):
        messages.decode(bad_stream)
    negative = msgspec.msgpack.encode({"type": "JobOutput", "job_id": "j", "dropped": -1})
    with pytest.raises(messages.MessageError):
        messages.decode(negative)
    assert messages.ENTITLED[messages.JobOutput] is messages.Sender.ACCEPTED


def test_the_sender_sends_in_order_and_counts_what_was_not_taken() -> None:
    async def main() -> None:
        delivered: list[messages.JobOutput] = []
        refuse = {"on": False}

        async def send(batch: messages.JobOutput) -> bool:
            await trio.sleep(0)
            if refuse["on"]:
                return False
            delivered.append(batch)
            return True

        sender = OutputSender("job", 2, send)
        sender.output.add([_line("a"), _line("b")])
        await sender.flush()
        refuse["on"] = True
        sender.output.add([_line("c")])
        await sender.flush()  # refused: "c" is lost, and said so next time
        refuse["on"] = False
        sender.output.add([_line("d")], skipped=4)
        await sender.flush()
        assert [[line.line for line in b.lines] for b in delivered] == [["a", "b"], ["d"]]
        assert [b.dropped for b in delivered] == [0, 5]
        assert all(b.shard == 2 and b.job_id == "job" for b in delivered)
        assert sender.output.statistics().dropped == 5

    trio.run(main)


# -- the requester side -------------------------------------------------------------


def test_readers_get_each_record_once_in_order_and_are_told_what_they_missed() -> None:
    log = JobOutputLog(keep_lines=3, keep_chars=10_000)
    early, late = log.cursor(), log.cursor()
    log.add(0, "A", [_line("a1"), _line("a2")])
    log.add(1, "B", [_line("b1", "stderr")], dropped=2)
    assert [(r.node, r.line, r.dropped) for r in log.read(early)] == [
        ("A", "a1", 0),
        ("A", "a2", 0),
        ("B", "", 2),
        ("B", "b1", 0),
    ]
    assert log.read(early) == []
    log.add(0, "A", [_line(f"a{i}") for i in range(3, 8)])
    # "late" never read: of A's 7 lines only the newest 3 are kept.
    found = log.read(late, shard=0)
    assert [(r.line, r.dropped) for r in found] == [("", 4), ("a5", 0), ("a6", 0), ("a7", 0)]
    # "early" had A's first 2: it missed a3 and a4, which left the window.
    found = log.read(early, stream="stdout")
    assert [(r.line, r.dropped) for r in found] == [("", 2), ("a5", 0), ("a6", 0), ("a7", 0)]
    fresh = log.cursor()
    assert [r.line for r in log.read(fresh, node="B", stream="stderr")] == ["", "b1"]
    assert log.statistics().lines == 8
    assert log.statistics().dropped == 2


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 6), st.integers(0, 3)), max_size=25
    ),
    reads=st.sets(st.integers(0, 25)),
    keep=st.integers(1, 6),
)
def test_a_reader_accounts_for_every_line_of_every_execution(
    batches: list[tuple[int, int, int]], reads: set[int], keep: int
) -> None:
    """Whenever a reader reads, per execution the lines it got plus the lines it was
    told it missed or were dropped equal the lines sent; records come in arrival order."""
    log = JobOutputLog(keep_lines=keep, keep_chars=10**6)
    cursor = log.cursor()
    sent: dict[int, int] = {}
    accounted: dict[int, int] = {}
    seqs: list[int] = []
    for step, (shard, count, dropped) in enumerate(batches):
        log.add(shard, "N", [_line(str(i)) for i in range(count)], dropped)
        sent[shard] = sent.get(shard, 0) + count + dropped
        if step in reads or step == len(batches) - 1:
            for record in log.read(cursor):
                accounted[record.shard] = accounted.get(record.shard, 0) + (record.dropped or 1)
                seqs.append(record.seq)
    assert accounted == {k: v for k, v in sent.items() if v}
    assert seqs == sorted(seqs)


def test_followers_wake_on_lines_and_on_the_end() -> None:
    async def main() -> None:
        store = OutputStore(keep_ended=1)
        log = store.open("j1")
        cursor = log.cursor()
        seen: list[str] = []

        async def follow() -> None:
            while True:
                ended = log.ended
                seen.extend(r.line for r in log.read(cursor))
                if ended:
                    return
                await log.wait()

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await trio.sleep(0)
                log.add(0, "A", [_line("x")])
                await trio.sleep(0)
                log.add(0, "A", [_line("y")])
                store.end("j1")
        assert seen == ["x", "y"]
        store.open("j2")
        store.end("j2")
        assert list(store) == ["j2"]  # one ended job kept: the oldest went
        assert store.statistics().jobs == 1

    trio.run(main)
