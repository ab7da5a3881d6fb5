"""A node's log tail, followed over its API, and how its lines read on screen.

This module owns :class:`LogCursor` (where the node view is in a node's log: the
``offset`` to ask ``GET /api/v1/logs?tail=N&after=OFFSET`` after next, and whether an
answer is a fresh tail that replaces what was shown) and :func:`format_log_line` (a
node's JSON log line as ``time level logger message``). The node reads its own log
file; the TUI never opens it. Nothing here does I/O or imports Textual.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text

MAX_LINE_CHARS = 2000  # a longer line is cut on screen (the file keeps it whole)


@dataclass(frozen=True)
class LogRead:
    """What one ``GET /api/v1/logs`` brought."""

    lines: tuple[str, ...]  # new complete lines, oldest first
    restarted: bool = False  # the lines are a fresh tail: drop what was shown before
    error: str = ""  # why nothing could be read ("" if the node answered)
    path: str = ""  # the node's log file, as the node names it


class LogCursor:
    """Follows a node's log as ``tail -f`` does, one answer at a time: the first
    request (:attr:`after` None) asks for the tail, every later one for what was
    written after the previous answer's ``offset``.

    The node starts over with a fresh tail when its file shrank below the offset asked
    (truncated, or replaced by a shorter one): the answer's offset then goes back,
    and :meth:`read` says the lines replace what was shown."""

    def __init__(self) -> None:
        self.after: int | None = None
        """The ``after`` of the next request (None: a fresh tail)."""
        self.path = ""

    def read(self, answer: dict[str, Any]) -> LogRead:
        """The new lines of ``answer`` (``{"path", "offset", "lines"}``).

        Raises KeyError/TypeError/ValueError for an answer without that shape.
        """
        path, offset, lines = str(answer["path"]), int(answer["offset"]), answer["lines"]
        if not isinstance(lines, list):
            raise TypeError(f"lines: a list expected, got {type(lines).__name__}")
        restarted = self.after is None or offset < self.after or path != self.path
        self.after, self.path = offset, path
        return LogRead(tuple(str(line) for line in lines), restarted=restarted, path=path)


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
