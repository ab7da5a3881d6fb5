"""A node's profile answers written as files, for ``devstack profile`` and the TUI alike.

This module owns the names and contents of the files a profile leaves behind: a CPU
profile (``POST /api/v1/debug/profile``, :func:`save_profile`) as
``NODE-TIMESTAMP.html``, ``.txt`` and ``.speedscope.json``; a memory profile
(``POST /api/v1/debug/memory``, :func:`save_memory_profile`) as
``NODE-TIMESTAMP.memory.txt`` and ``.memory.json``. :func:`profile_base` is the
``DIR/NODE-TIMESTAMP`` they share.

Only the answers' JSON and the file system: no trio, nothing of the node.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAMP_FORMAT = "%Y%m%dT%H%M%S"
"""The ``TIMESTAMP`` of a profile's file names (local time, to the second)."""


@dataclass(frozen=True)
class SavedProfile:
    node: str
    samples: int
    paths: tuple[Path, ...]
    top: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SavedMemoryProfile:
    node: str
    current_bytes: int
    peak_bytes: int
    paths: tuple[Path, ...]
    top_by_growth: tuple[dict[str, Any], ...]
    top_by_size: tuple[dict[str, Any], ...]


def profile_base(out_dir: Path, node: str, stamp: str | None = None) -> Path:
    """``out_dir/NODE-TIMESTAMP``, the base of a profile's file names; ``stamp`` is
    now's by default (nodes profiled together pass one stamp for all)."""
    return out_dir / f"{node}-{stamp if stamp is not None else time.strftime(STAMP_FORMAT)}"


def save_profile(node: str, answer: dict[str, Any], base: Path) -> SavedProfile:
    """Write ``node``'s ``/api/v1/debug/profile`` answer as ``BASE.html``, ``BASE.txt``
    and ``BASE.speedscope.json``; ``base`` is ``DIR/NODE-TIMESTAMP``."""
    paths = (
        base.with_suffix(".html"),
        base.with_suffix(".txt"),
        base.with_suffix(".speedscope.json"),
    )
    for path, key in zip(paths, ("html", "text", "speedscope"), strict=True):
        path.write_text(answer[key])
    return SavedProfile(node, answer["samples"], paths, tuple(answer["top"]))


def save_memory_profile(node: str, answer: dict[str, Any], base: Path) -> SavedMemoryProfile:
    """Write ``node``'s ``/api/v1/debug/memory`` answer as ``BASE.memory.txt`` (its
    report) and ``BASE.memory.json`` (all of it); ``base`` is ``DIR/NODE-TIMESTAMP``."""
    paths = (base.with_suffix(".memory.txt"), base.with_suffix(".memory.json"))
    paths[0].write_text(answer["text"])
    paths[1].write_text(json.dumps(answer, indent=2) + "\n")
    return SavedMemoryProfile(
        node=node,
        current_bytes=answer["current_bytes"],
        peak_bytes=answer["peak_bytes"],
        paths=paths,
        top_by_growth=tuple(answer["top_by_growth"]),
        top_by_size=tuple(answer["top_by_size"]),
    )
