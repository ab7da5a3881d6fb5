"""The newest lines of a running container's output, and how many went by.

The Docker executor reads what a container prints from its attach stream as it
comes (:mod:`node.executors.docker`) and feeds each piece here, from the reading
thread; the node's loop takes what arrived every so often. :class:`LineTail`
keeps the pieces themselves, counting their newlines with a C-speed byte scan,
and lets the oldest go once the rest hold ``keep`` lines: a flood costs a few
operations per piece (the daemon sends up to 4 KiB at a time), not per line, and
only the lines a take returns are ever split and decoded. Every line passed over
is counted (the caller reports them as dropped).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from node.messages import MAX_OUTPUT_LINE, OutputLine, OutputStream

#: Bytes of an unfinished line kept (the line is cut to MAX_OUTPUT_LINE characters
#: anyway; UTF-8 takes up to 4 bytes a character).
_MAX_LINE_BYTES = 4 * MAX_OUTPUT_LINE


@dataclass
class LogRead:
    """What one :meth:`LineTail.take` found: the newest complete ``lines`` (oldest
    first) and how many lines before them were ``skipped``."""

    lines: list[OutputLine] = field(default_factory=list)
    skipped: int = 0


class _Piece(NamedTuple):
    stream: OutputStream
    at: float
    data: bytes
    newlines: int


def _text(raw: bytes) -> str:
    return raw[:_MAX_LINE_BYTES].decode("utf-8", "replace")[:MAX_OUTPUT_LINE]


class LineTail:
    """The newest ``keep`` lines of a container's stdout and stderr, in the order
    they came, and the count of those passed over.

    Guarantees: every line fed (every newline) is either taken once (:meth:`take`)
    or counted once in ``skipped``; a line is cut to
    :data:`~node.messages.MAX_OUTPUT_LINE` characters; memory holds the pieces of
    about ``keep`` lines and at most ``max_bytes`` (a piece is let go once the
    others hold ``keep`` lines, or while they hold more than ``max_bytes``), plus
    one unfinished line per stream. A line whose start was let go is counted as
    skipped, not shown cut. :meth:`feed` is called from one thread, :meth:`take` from
    any (``final`` only once feeding has stopped).
    """

    def __init__(
        self,
        keep: int,
        max_bytes: int = 4 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keep < 1 or max_bytes < 1:
            raise ValueError(f"keep and max_bytes must be at least 1, got {keep}, {max_bytes}")
        self._keep = keep
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._pieces: deque[_Piece] = deque()
        self._held_lines = 0
        self._held_bytes = 0
        self._skipped = 0
        # The start of a line not ended by the pieces taken so far, per stream.
        self._partial: dict[OutputStream, tuple[float, bytes]] = {}
        # Streams whose next line lost its start with a piece let go: it is skipped.
        self._broken: set[OutputStream] = set()

    def feed(self, stream: OutputStream, data: bytes) -> None:
        """Take in a piece of ``stream`` as the container wrote it."""
        piece = _Piece(stream, self._clock(), data, data.count(b"\n"))
        with self._lock:
            self._pieces.append(piece)
            self._held_lines += piece.newlines
            self._held_bytes += len(data)
            while len(self._pieces) > 1 and (
                self._held_lines - self._pieces[0].newlines >= self._keep
                or self._held_bytes > self._max_bytes
            ):
                gone = self._pieces.popleft()
                self._held_lines -= gone.newlines
                self._held_bytes -= len(gone.data)
                self._skipped += gone.newlines
                # The line the piece let go ends in (or is part of) has lost its start.
                self._partial.pop(gone.stream, None)
                if gone.newlines:  # a broken line before ended in it: counted above
                    self._broken.discard(gone.stream)
                if not gone.data.endswith(b"\n"):
                    self._broken.add(gone.stream)

    def take(self, *, final: bool = False) -> LogRead:
        """The lines kept since the last take, and how many were passed over.
        ``final``: the output has ended, so an unfinished last line is a line too
        (call it once nothing is fed any more)."""
        with self._lock:
            pieces, self._pieces = self._pieces, deque()
            skipped, self._skipped = self._skipped, 0
            self._held_lines = self._held_bytes = 0
            found = LogRead(skipped=skipped)
            for piece in pieces:
                stream = piece.stream
                *ended, rest = piece.data.split(b"\n")
                if stream in self._broken:
                    if not ended:
                        continue  # more of a line whose start was let go
                    self._broken.discard(stream)
                    found.skipped += 1  # that line: counted, not shown cut
                    ended = ended[1:]
                    began, head = piece.at, b""
                else:
                    began, head = self._partial.pop(stream, (piece.at, b""))
                if ended:
                    found.lines.append(OutputLine(stream, began, _text(head + ended[0])))
                    found.lines.extend(OutputLine(stream, piece.at, _text(r)) for r in ended[1:])
                    began, head = piece.at, b""
                head = (head + rest)[:_MAX_LINE_BYTES]
                if head:
                    self._partial[stream] = (began, head)
            if final:
                for stream, (began, head) in sorted(self._partial.items()):
                    found.lines.append(OutputLine(stream, began, _text(head)))
                found.skipped += len(self._broken)  # unfinished lines that lost their start
                self._partial.clear()
                self._broken.clear()
        if len(found.lines) > self._keep:
            found.skipped += len(found.lines) - self._keep
            found.lines = found.lines[-self._keep :]
        return found
