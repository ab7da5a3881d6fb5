"""Memory profiles of a running node: tracemalloc sessions on demand.

This module owns :func:`profile_memory`, which traces the process's Python
allocations for a number of seconds and reports where memory is held (the end
snapshot, by size) and where it grew (end against start snapshot), each grouped by
the source line that allocated; and the :class:`MemoryProfile` it returns.

tracemalloc only sees allocations made while it traces, so when a session starts
tracing itself (the usual case) "by size" covers what was allocated during the
session and is still alive; a process started with ``PYTHONTRACEMALLOC`` is traced
from its start and "by size" covers everything. Figures are Python allocator bytes,
not RSS. Tracing slows every allocation while it is on, so a session stops it again
at the end unless it was already on.

One session at a time per process: tracemalloc's state is process-wide, and two
overlapping sessions would stop each other's tracing.
"""

from __future__ import annotations

import ast
import functools
import linecache
import os
import sys
import tracemalloc
from dataclasses import asdict, dataclass

import trio

from profiles.cpu import ProfileBusy, SessionGuard

__all__ = [
    "GrowthSite",
    "MemoryProfile",
    "MemoryProfileBusy",
    "SizeSite",
    "format_bytes",
    "growth_line",
    "profile_memory",
    "short_path",
    "size_line",
]

TOP_SITES = 15
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One frame is all that grouping by line needs, and each extra frame costs memory
# per live allocation for the whole session.
DEFAULT_FRAMES = 1

# The sessions' own snapshots are allocated in tracemalloc.py, and imports in frozen
# importlib: neither is the node's memory.
_FILTERS = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen *>"),
    tracemalloc.Filter(False, os.path.join("*", "importlib", "*")),
    tracemalloc.Filter(False, "<unknown>"),
)


class MemoryProfileBusy(ProfileBusy):
    """A memory profile is already being taken in this process; try again when it ends."""


@dataclass(frozen=True)
class SizeSite:
    site: str  # "path:line", shortened
    function: str  # enclosing function, "" when the source cannot be read
    size_bytes: int
    count: int  # live memory blocks


@dataclass(frozen=True)
class GrowthSite:
    site: str  # "path:line", shortened
    function: str  # enclosing function, "" when the source cannot be read
    size_diff_bytes: int
    count_diff: int
    size_bytes: int  # at the end of the session


@dataclass(frozen=True)
class MemoryProfile:
    seconds: float
    current_bytes: int  # traced at the end of the session
    peak_bytes: int  # traced, since tracing started
    overhead_bytes: int  # tracemalloc's own bookkeeping at the end
    top_by_size: tuple[SizeSite, ...]  # most first
    top_by_growth: tuple[GrowthSite, ...]  # most first; sites that grew only
    text: str


_guard = SessionGuard(MemoryProfileBusy, "memory profile")


async def profile_memory(
    seconds: float, *, top: int = TOP_SITES, frames: int = DEFAULT_FRAMES
) -> MemoryProfile:
    """Trace allocations for ``seconds`` and report the ``top`` sites by size and growth.

    Starts tracemalloc with ``frames`` frames per allocation unless it is already
    tracing (then its own setting stands), and stops it at the end, or on
    cancellation, only if this call started it. Raises ValueError for a duration
    outside (0, MAX_SECONDS] or ``top``/``frames`` below 1, and
    :class:`MemoryProfileBusy` if a session is already running in this process.
    """
    if top < 1 or frames < 1:
        raise ValueError(f"top and frames must be at least 1, got {top} and {frames}")
    with _guard.session(seconds):
        started_here = not tracemalloc.is_tracing()
        if started_here:
            tracemalloc.start(frames)
        try:
            # Off the loop: a snapshot copies every live trace, and the node's other
            # tasks keep running meanwhile instead of stalling behind it.
            start = await trio.to_thread.run_sync(tracemalloc.take_snapshot)
            await trio.sleep(seconds)
            end = await trio.to_thread.run_sync(tracemalloc.take_snapshot)
            current, peak = tracemalloc.get_traced_memory()
            overhead = tracemalloc.get_tracemalloc_memory()
        finally:
            if started_here:
                tracemalloc.stop()
        by_size, by_growth = await trio.to_thread.run_sync(_top_sites, start, end, top)
    text = _report(seconds, current, peak, overhead, by_size, by_growth)
    return MemoryProfile(seconds, current, peak, overhead, by_size, by_growth, text)


def _top_sites(
    start: tracemalloc.Snapshot, end: tracemalloc.Snapshot, top: int
) -> tuple[tuple[SizeSite, ...], tuple[GrowthSite, ...]]:
    start, end = start.filter_traces(_FILTERS), end.filter_traces(_FILTERS)
    by_size = tuple(
        SizeSite(*_where(stat.traceback), stat.size, stat.count)
        for stat in end.statistics("lineno")[:top]
    )
    # compare_to sorts by absolute difference; a growth list wants the most growth first.
    grown = sorted(
        (diff for diff in end.compare_to(start, "lineno") if diff.size_diff > 0),
        key=lambda diff: diff.size_diff,
        reverse=True,
    )
    by_growth = tuple(
        GrowthSite(*_where(diff.traceback), diff.size_diff, diff.count_diff, diff.size)
        for diff in grown[:top]
    )
    return by_size, by_growth


def _where(traceback: tracemalloc.Traceback) -> tuple[str, str]:
    frame = traceback[0]
    return f"{short_path(frame.filename)}:{frame.lineno}", _function_at(
        frame.filename, frame.lineno
    )


@functools.lru_cache(maxsize=4096)
def short_path(path: str) -> str:
    """``path`` relative to the sys.path entry or repo root that leaves the fewest components.

    pyinstrument's rule, so CPU and memory profiles name files alike:
    ``trio/_core/_run.py`` for site-packages, ``node/api.py`` for the repo. The
    repo root counts too because an editable install does not put it on sys.path.
    Names that are not paths (``<string>``) are returned as they are.
    """
    if os.sep not in path:
        return path
    best = path
    for entry in (*sys.path, _REPO):
        try:
            candidate = os.path.relpath(path, entry or os.curdir)
        except ValueError:
            continue
        if len(candidate.split(os.sep)) < len(best.split(os.sep)):
            best = candidate
    return best


def _function_at(filename: str, lineno: int) -> str:
    """The innermost function or class around ``lineno``; "" if none or unreadable."""
    best = ""
    best_start = 0
    for start, end, name in _scopes(filename):
        if start <= lineno <= end and start >= best_start:
            best, best_start = name, start
    return best


@functools.lru_cache(maxsize=256)
def _scopes(filename: str) -> tuple[tuple[int, int, str], ...]:
    source = "".join(linecache.getlines(filename))
    if not source:
        return ()
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return ()
    scopes: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                scopes.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(scopes)


def format_bytes(n: float, *, sign: bool = False) -> str:
    """``n`` bytes in B, KiB, MiB or GiB, with a leading + when ``sign`` and positive."""
    plus = "+" if sign and n > 0 else ""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{plus}{n:.0f} {unit}" if unit == "B" else f"{plus}{n:.1f} {unit}"
        n /= 1024
    return f"{plus}{n:.1f} GiB"


def _place(site: str, function: str) -> str:
    return f"{site} in {function}" if function else site


def growth_line(
    *, site: str, function: str, size_diff_bytes: int, count_diff: int, size_bytes: int
) -> str:
    """One row of a growth table; the keywords are :class:`GrowthSite`'s fields."""
    return (
        f"{format_bytes(size_diff_bytes, sign=True):>11} {count_diff:+9d} blocks"
        f"  (now {format_bytes(size_bytes)})  {_place(site, function)}"
    )


def size_line(*, site: str, function: str, size_bytes: int, count: int) -> str:
    """One row of a size table; the keywords are :class:`SizeSite`'s fields."""
    return f"{format_bytes(size_bytes):>11} {count:9d} blocks  {_place(site, function)}"


def _report(
    seconds: float,
    current: int,
    peak: int,
    overhead: int,
    by_size: tuple[SizeSite, ...],
    by_growth: tuple[GrowthSite, ...],
) -> str:
    lines = [
        f"memory profile over {seconds:g}s (tracemalloc): {format_bytes(current)} traced"
        f" at the end, {format_bytes(peak)} peak, {format_bytes(overhead)} tracemalloc's own",
        "",
        "grown most during the session:",
        *(f"  {growth_line(**asdict(row))}" for row in by_growth),
        "",
        "largest at the end of the session:",
        *(f"  {size_line(**asdict(row))}" for row in by_size),
    ]
    if not by_growth:
        lines.insert(3, "  (nothing grew)")
    return "\n".join(lines) + "\n"
