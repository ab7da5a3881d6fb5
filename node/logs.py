"""Structured logging: one JSON object a line, to the node's own file, quiet by default."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path


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
