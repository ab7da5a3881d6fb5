"""Structured logging: one JSON object a line, to the node's own file, quiet by default;
and reading that file's last lines back (:func:`read_tail`, for ``GET /api/v1/logs``)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

# read_tail reads the file backwards this much at a time, and at most MAX_TAIL_BYTES
# in all: a few lines of a huge file cost a few blocks, never the whole file.
_BLOCK = 64 * 1024
MAX_TAIL_BYTES = 8 << 20


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_file: Path | None, level: str = "info") -> None:
    """Send every log record to ``log_file`` (stderr if None) as JSON lines.

    Our own loggers log at ``level``; libraries only warnings and up, since
    py-libp2p is chatty at info.
    """
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for ours in ("node", "devstack", "profiles"):
        logging.getLogger(ours).setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


@dataclass(frozen=True, slots=True)
class LogTail:
    """Complete lines of a log file (newest last, without their newlines), and
    ``offset``: the byte just past the last line read, where the next read goes on."""

    offset: int
    lines: list[str]


def read_tail(path: Path, lines: int, after: int = 0) -> LogTail:
    """The last ``lines`` complete lines of ``path`` that start at or past byte ``after``
    (an offset a previous read returned); from the start of the file if it is now
    shorter than ``after`` (rotated or truncated). A line still being written (no
    newline yet) is left for the next read. Reads the file from its end, at most
    :data:`MAX_TAIL_BYTES` of it; blocking (call it in a worker thread). Raises
    ``OSError`` if the file cannot be read.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = after if 0 <= after <= size else 0
        pos, newlines = size, 0
        chunks: list[bytes] = []
        # One newline more than the lines wanted: the first line read may be cut.
        while pos > start and newlines <= lines and size - pos < MAX_TAIL_BYTES:
            step = min(_BLOCK, pos - start)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    end = data.rfind(b"\n") + 1  # past the last complete line; 0 if there is none
    first = 0 if pos == start else data.find(b"\n") + 1  # a cut first line is dropped
    whole = data[first:end].split(b"\n")[:-1] if end > first else []
    kept = whole[max(0, len(whole) - lines) :]
    return LogTail(pos + end, [line.decode("utf-8", "replace") for line in kept])
