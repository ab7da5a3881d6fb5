"""The tail of a node's log file, followed, and how its lines read on screen.

This module owns :func:`tail_lines` (the last N lines of a file, read backwards in
blocks: never the whole file), :class:`LogFollower` (the tail once, then only what
was appended; a truncated or replaced file starts over) and :func:`format_log_line`
(a node's JSON log line as ``time level logger message``). The reads block: the
node view calls them in a worker thread. Nothing here imports Textual.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

BLOCK = 64 * 1024
MAX_TAIL_BYTES = 4 * 1024 * 1024  # a tail never reads more than this, however long the lines
MAX_LINE_CHARS = 2000  # a longer line is cut on screen (the file keeps it whole)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def tail_lines(
    path: Path, count: int, *, block: int = BLOCK, max_bytes: int = MAX_TAIL_BYTES
) -> tuple[list[str], int]:
    """The last ``count`` complete lines of ``path`` and the offset just past the last
    of them (where the next read starts).

    A last line without its newline yet is not complete: it is left for the next
    read, whole. Reads ``block`` bytes at a time from the end, and at most
    ``max_bytes`` (a line longer than that is not returned). Raises OSError if the
    file cannot be read.
    """
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        data = b""
        pos = size
        while pos > 0 and data.count(b"\n") <= count and len(data) < max_bytes:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    end = data.rfind(b"\n") + 1  # 0: no complete line
    complete = data[:end]
    pieces = complete.split(b"\n")[:-1]  # each line, without its newline
    if pos > 0 and pieces:
        pieces = pieces[1:]  # the first piece began before what was read
    shown = pieces[-count:] if count > 0 else []
    return [_decode(p) for p in shown], pos + end


@dataclass(frozen=True)
class LogRead:
    """What one :meth:`LogFollower.read` found."""

    lines: tuple[str, ...]  # new complete lines, oldest first
    restarted: bool = False  # the lines are a fresh tail: drop what was shown before
    error: str = ""  # why nothing could be read ("" if the file was read)


class LogFollower:
    """Follows ``path`` as ``tail -f`` does: the last ``lines`` lines first, then
    whatever is appended. If the file shrank or was replaced, or more than
    ``max_bytes`` were appended between two reads, it starts over from a fresh tail."""

    def __init__(self, path: Path, lines: int = 200, *, max_bytes: int = 1024 * 1024) -> None:
        self.path = path
        self.lines = lines
        self.max_bytes = max_bytes
        self._offset: int | None = None
        self._inode: int | None = None

    def read(self) -> LogRead:
        try:
            stat = self.path.stat()
            if (
                self._offset is None
                or stat.st_ino != self._inode
                or stat.st_size < self._offset
                or stat.st_size - self._offset > self.max_bytes
            ):
                lines, self._offset = tail_lines(self.path, self.lines)
                self._inode = stat.st_ino
                return LogRead(tuple(lines), restarted=True)
            if stat.st_size == self._offset:
                return LogRead(())
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read(stat.st_size - self._offset)
        except OSError as exc:
            self._offset = self._inode = None
            return LogRead((), restarted=True, error=exc.strerror or str(exc))
        end = data.rfind(b"\n") + 1
        self._offset += end
        return LogRead(tuple(_decode(p) for p in data[:end].split(b"\n")[:-1]))


_LEVEL_STYLE = {
    "debug": "dim",
    "info": "",
    "warning": "yellow",
    "error": "bold red",
    "critical": "bold red reverse",
}
_LEVEL_TAG = {"warning": "WARN", "critical": "CRIT"}


def format_log_line(line: str) -> Text:
    """A node's log line (``node.logs``: one JSON object) as ``HH:MM:SS.mmm LEVEL
    logger message`` in local time, its traceback on the lines below; any other line
    as it is."""
    line = line[:MAX_LINE_CHARS]
    try:
        entry = json.loads(line)
        ts, level, logger, msg = entry["ts"], entry["level"], entry["logger"], entry["msg"]
        stamp = time.strftime("%H:%M:%S", time.localtime(float(ts)))
        millis = int(float(ts) * 1000) % 1000
    except (ValueError, TypeError, KeyError):
        return Text(line)
    style = _LEVEL_STYLE.get(str(level), "")
    text = Text()
    text.append(f"{stamp}.{millis:03d} ", style="dim")
    text.append(f"{_LEVEL_TAG.get(str(level), str(level).upper()):<5} ", style=style or "green")
    text.append(f"{logger} ", style="cyan")
    text.append(str(msg), style=style)
    exc = entry.get("exc")
    if exc:
        text.append("\n" + str(exc).rstrip("\n"), style="red")
    return text
