"""A job's live output as its requester streams it, newest line at the bottom.

This module owns :class:`OutputPane`, the job view's output pane: a
:class:`~textual.widgets.RichLog` fed the records of ``GET /api/v1/jobs/{id}/logs``
(:meth:`OutputPane.add_record`), with what went wrong on the way as a line of its own
(:meth:`OutputPane.note`) and the job's end in its title (:meth:`OutputPane.end`).
Nothing here does I/O: the job view's worker follows the stream and hands records in.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.reactive import var
from textual.widgets import RichLog

from tui.jobview import name_of

#: Lines the pane keeps (older ones leave the top).
MAX_LINES = 2000
#: A longer line is cut on screen (the requester has cut it already at its own bound).
MAX_LINE_CHARS = 2000
TITLE = "Output"
STDERR_STYLE = "red"
LOST_STYLE = "italic yellow"
NOTE_STYLE = "yellow"
QUIET_STYLE = "dim"
#: The labels' colours, one per place (shard, node) in the order they first printed.
LABEL_STYLES = ("cyan", "magenta", "green", "blue", "bright_cyan", "bright_magenta")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def clean_line(line: str) -> str:
    """``line`` as one screen line: ANSI escapes and control characters (a stray
    ``\\r`` or ``\\n`` included) removed, cut at :data:`MAX_LINE_CHARS`."""
    return _CONTROL.sub("", _ANSI.sub("", line[: MAX_LINE_CHARS * 2]))[:MAX_LINE_CHARS]


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class OutputPane(RichLog):
    """One job's output lines, at most ``max_lines`` of them, newest at the bottom.

    Guarantees:

    - a line record is one screen line (stderr in :data:`STDERR_STYLE`); a record of
      lost lines reads ``… N line(s) lost``; a record whose ``seq`` is not above the
      highest already shown is skipped, so a stream followed again from its start
      shows nothing twice;
    - each line starts with its place, ``node-1`` (``node-1#2`` for shard 2 of a
      sharded job), once the job runs in more than one place: as
      :meth:`label_by` says, or as soon as records come from a second place;
    - records are written at the next turn of the message loop, all those that came
      in the meantime in one write (RichLog renders each write on its own);
    - while :attr:`paused`, nothing is written and nothing scrolls: new lines wait
      (the latest ``max_lines`` of them) and the title counts them; unpausing writes
      them and scrolls to the end. Unpaused, every write scrolls to the end.
    """

    paused: var[bool] = var(False, init=False)
    """Whether new lines wait instead of being written (the view stays still)."""

    def __init__(
        self, *, max_lines: int = MAX_LINES, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(max_lines=max_lines, wrap=False, markup=False, id=id, classes=classes)
        self._names: Mapping[str, str] = {}
        self._by_node = False
        self._by_shard = False
        self._places: dict[tuple[int, str], str] = {}  # place → its label's style
        self._shards: set[int] = set()
        self._waiting: deque[Text] = deque(maxlen=max_lines)
        self._flush_due = False
        self._new = 0  # lines that came while paused
        self._last_seq = 0
        self._last_note = ""
        self.received = 0
        """Line records shown or waiting (lost lines not counted)."""
        self.lost = 0
        """Lines the records said were lost."""
        self.ended: str | None = None
        """The job's final state once its end record came (None before)."""

    def on_mount(self) -> None:
        self._retitle()

    # -- what comes in ----------------------------------------------------------------

    def label_by(self, names: Mapping[str, str], *, places: int, shards: int) -> None:
        """Name nodes with ``names`` (peer id → devstack name); label lines when the job
        runs in more than one place (``places``: its concurrency times its shards),
        with the shard when it has more than one. Applies to lines written later."""
        self._names = names
        self._by_node = self._by_node or places > 1
        self._by_shard = self._by_shard or shards > 1

    def add_record(self, record: Mapping[str, Any]) -> bool:
        """Show one record of the stream (a line or lost lines); False if it was
        skipped (seen already, or not a record of either kind)."""
        seq = _int(record.get("seq"), -1)
        if seq < 0 or seq <= self._last_seq or not isinstance(record.get("node"), str):
            return False
        dropped = _int(record.get("dropped"))
        line = record.get("line")
        if dropped <= 0 and not isinstance(line, str):
            return False
        self._last_seq = seq
        shard, node = _int(record.get("shard")), str(record["node"])
        self._place(shard, node)
        text = self._label(shard, node)
        if dropped > 0:
            self.lost += dropped
            text.append(f"… {dropped} line(s) lost", style=LOST_STYLE)
        else:
            self.received += 1
            stderr = record.get("stream") == "stderr"
            text.append(clean_line(str(line)), style=STDERR_STYLE if stderr else "")
        self._last_note = ""
        self._queue(text)
        return True

    def note(self, message: str) -> None:
        """One line saying what went wrong (the same message twice in a row: once)."""
        if message == self._last_note:
            return
        self._last_note = message
        self._queue(Text(clean_line(message), style=NOTE_STYLE))

    def end(self, state: str) -> None:
        """The job ended in ``state``: said in the title (and in a line if it printed
        nothing)."""
        self.ended = state or "ended"
        if not self.received and not self.lost:
            self._queue(Text("(no output)", style=QUIET_STYLE))
        self._retitle()

    def _place(self, shard: int, node: str) -> None:
        if (shard, node) in self._places:
            return
        self._places[(shard, node)] = LABEL_STYLES[len(self._places) % len(LABEL_STYLES)]
        self._shards.add(shard)
        # A second place the spec did not announce (a rerun elsewhere): label from now on.
        self._by_shard = self._by_shard or len(self._shards) > 1
        self._by_node = self._by_node or len(self._places) > 1

    def _label(self, shard: int, node: str) -> Text:
        if not self._by_node and not self._by_shard:
            return Text()
        where = name_of(node, self._names) or "?"
        if self._by_shard:
            where += f"#{shard}"
        return Text.assemble((where, self._places[(shard, node)]), (" │ ", QUIET_STYLE))

    # -- writing --------------------------------------------------------------------------

    def _queue(self, text: Text) -> None:
        self._waiting.append(text)
        if self.paused:
            self._new += 1
        if not self._flush_due:
            self._flush_due = True
            self.call_later(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self.paused:
            self._retitle()
            return
        if self._waiting:
            texts = list(self._waiting)
            self._waiting.clear()
            self.write(Text("\n").join(texts), scroll_end=True)
        self._retitle()

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
        if not paused:
            self._new = 0
            self._flush()
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self._retitle()

    @property
    def waiting(self) -> int:
        """Lines that came while paused (or since the last write), not shown yet."""
        return len(self._waiting)

    @property
    def shown(self) -> list[str]:
        """The plain text of the lines on screen, oldest first (for tests)."""
        return [strip.text for strip in self.lines]

    def _retitle(self) -> None:
        """``Output 12 lines · 3 lost · the job ended (completed)``, or while paused
        ``Output 12 lines (paused: 2 new)``."""
        title = TITLE
        if self.received:
            title += f" {self.received} line{'s' if self.received != 1 else ''}"
        if self.lost:
            title += f" · {self.lost} lost"
        if self.paused:
            title += f" (paused: {self._new} new)"
        elif self.ended is not None:
            title += f" · the job ended ({self.ended})"
        self.border_title = title
