"""Pure helpers of the TUI's contention screens: lock and stall rows, call trees.

This module owns what the locks view and a node's view compute from the nodes'
``GET /api/v1/debug/locks`` documents, on top of :mod:`profiles.contention` (whose
:func:`~profiles.contention.merge` and :func:`~profiles.contention.since` are the
ranking ``devstack locks`` prints, reused as they are):

- :class:`ContentionTracker` turns each round of documents into a
  :class:`ContentionRound`: the merge, one :class:`LockRow` per lock (which nodes
  waited on it, the worst one, waits per second since the previous round) and one
  :class:`TaskRow` per task that stalled the loop;
- :func:`stall_lines`, :func:`short_site`, :func:`short_task`: how stalls, call
  sites and task names read on screen;
- :func:`parse_call_tree`: pyinstrument's text tree (the ``text`` of
  ``POST /api/v1/debug/profile``) as :class:`CallNode` trees.

Nothing here does I/O or imports Textual.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiles.contention import ClusterContention, MergedStalls, MergedTask, merge, since
from tui.format import MISSING, fmt_ms

Report = tuple[str, dict[str, Any]]
"""One node's ``/api/v1/debug/locks`` document, with the node's name."""

#: Where this checkout lives: call sites under it are shown relative to it.
REPO_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
_SITE_PACKAGES = "/site-packages/"


def short_site(site: str, roots: Sequence[str] = (REPO_ROOT,)) -> str:
    """A call site (``/abs/path.py:12 in fn``) without the parts every site shares:
    a library's path from its package (``libp2p/...``), ours from the repository."""
    cut = site.rfind(_SITE_PACKAGES)
    if cut >= 0:
        return site[cut + len(_SITE_PACKAGES) :]
    for root in roots:
        if site.startswith(root):
            return site[len(root) :]
    return site


def short_task(name: str) -> str:
    """A trio task's name without its module path: ``Yamux._handle_incoming`` for
    ``libp2p.stream_muxer.yamux.yamux.Yamux._handle_incoming``."""
    head, bracket, tail = name.partition("[")  # "push_msg[daemon=False]": keep the brackets
    parts = head.split(".")
    return ".".join(parts[-2:]) + bracket + tail if len(parts) > 2 else name


def lock_key(name: str, created_at: str) -> str:
    """A lock's row key: the same lock (name and creation site) in every node."""
    return f"{name}@{created_at}"


@dataclass(frozen=True, slots=True)
class NodeShare:
    """One node's part of a lock."""

    node: str
    contended: int
    total_wait_ns: int
    max_wait_ns: int


@dataclass(frozen=True, slots=True)
class LockRow:
    """One lock, merged over the nodes that answered (one node, in a node's view).

    Counts and the total wait are summed over the nodes since each started; mean, p99,
    max wait and max hold are the worst node's, as ``devstack locks`` prints them.
    ``waits_per_s`` and ``wait_ms_per_s`` are over the last interval (None without one).
    """

    key: str
    name: str
    created_at: str
    nodes: int  # nodes that have this lock
    contended_nodes: int  # ... and had to wait for it
    acquisitions: int
    contended: int
    total_wait_ms: float
    mean_wait_ms: float
    p99_wait_ms: float
    max_wait_ms: float
    max_hold_ms: float
    waiters: tuple[tuple[str, int], ...]  # call sites that waited, most first
    holders: tuple[tuple[str, int], ...]  # sites that held it when someone waited
    where: tuple[tuple[str, float], ...] = ()  # (node, its total wait ms), most first
    worst_node: str | None = None  # the node with the longest single wait
    waits_per_s: float | None = None
    wait_ms_per_s: float | None = None

    @property
    def top_waiter(self) -> str:
        return short_site(self.waiters[0][0]) if self.waiters else MISSING

    @property
    def top_holder(self) -> str:
        return short_site(self.holders[0][0]) if self.holders else MISSING

    @property
    def search_text(self) -> str:
        sites = " ".join(site for site, _ in (*self.waiters, *self.holders))
        nodes = " ".join(node for node, _ in self.where)
        return f"{self.name} {self.created_at} {nodes} {sites}".lower()


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task name that stalled the loop, merged over the nodes."""

    name: str
    nodes: int
    stalls: int
    total_ms: float
    cpu_ms: float
    max_ms: float
    stalls_per_s: float | None = None

    @property
    def short(self) -> str:
        return short_task(self.name)

    @property
    def search_text(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ContentionRound:
    """What one round of documents says, ready for the tables."""

    at: float  # when the round ended (the caller's clock)
    nodes: tuple[str, ...]  # the nodes whose documents were merged
    found: ClusterContention
    locks: tuple[LockRow, ...]  # every lock, most total wait first
    tasks: tuple[TaskRow, ...]  # every task that stalled, most stall time first
    interval_s: float | None = None  # since the previous round of the same nodes (rates)

    @property
    def stalls(self) -> MergedStalls:
        return self.found.stalls

    @property
    def contended(self) -> tuple[LockRow, ...]:
        return tuple(row for row in self.locks if row.contended)

    def lock(self, key: str) -> LockRow | None:
        return next((row for row in self.locks if row.key == key), None)


def valid_reports(reports: Iterable[Report]) -> tuple[list[Report], list[str]]:
    """The documents :func:`~profiles.contention.merge` can read, and the nodes of the others."""
    good, bad = [], []
    for node, report in reports:
        try:
            merge([(node, report)])
        except (KeyError, TypeError, ValueError):
            bad.append(node)
        else:
            good.append((node, report))
    return good, bad


def node_shares(reports: Iterable[Report]) -> dict[str, list[NodeShare]]:
    """Per lock key, each node's part of it (the merge keeps counts, not who)."""
    shares: dict[str, list[NodeShare]] = {}
    for node, report in reports:
        for lock in report["locks"]:
            shares.setdefault(lock_key(lock["name"], lock["created_at"]), []).append(
                NodeShare(node, lock["contended"], lock["total_wait_ns"], lock["max_wait_ns"])
            )
    return shares


def _per_s(now: float, before: float, seconds: float | None) -> float | None:
    """A counter's growth per second; None without an interval or if it went back
    (a node restarted between the rounds)."""
    if seconds is None or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


class ContentionTracker:
    """Turns rounds of documents into :class:`ContentionRound`; remembers the previous
    round for rates (only between rounds that merged the same nodes)."""

    def __init__(self) -> None:
        self.last: ContentionRound | None = None

    def update(self, reports: Sequence[Report], at: float) -> ContentionRound:
        """Merge ``reports`` (valid documents, see :func:`valid_reports`) taken at ``at``."""
        found = merge(reports)
        nodes = tuple(sorted(node for node, _ in reports))
        previous = self.last
        interval = None
        delta: dict[str, Any] = {}
        tasks_before: dict[str, MergedTask] = {}
        if previous is not None and previous.nodes == nodes and at > previous.at:
            interval = at - previous.at
            delta = {lock_key(m.name, m.created_at): m for m in since(found, previous.found).locks}
            tasks_before = previous.found.stalls.tasks
        shares = node_shares(reports)
        locks = []
        for m in found.locks:
            key = lock_key(m.name, m.created_at)
            waited = sorted(
                (s for s in shares.get(key, ()) if s.contended),
                key=lambda s: (-s.total_wait_ns, s.node),
            )
            worst = max(waited, key=lambda s: (s.max_wait_ns, s.node), default=None)
            d = delta.get(key)
            fresh = d is not None and d.contended >= 0 and d.total_wait_ns >= 0
            locks.append(
                LockRow(
                    key=key,
                    name=m.name,
                    created_at=m.created_at,
                    nodes=m.nodes,
                    contended_nodes=m.contended_nodes,
                    acquisitions=m.acquisitions,
                    contended=m.contended,
                    total_wait_ms=m.total_wait_ns / 1e6,
                    mean_wait_ms=m.mean_wait_ns / 1e6,
                    p99_wait_ms=m.worst_p99_wait_ns / 1e6,
                    max_wait_ms=m.max_wait_ns / 1e6,
                    max_hold_ms=m.max_hold_ns / 1e6,
                    waiters=tuple(m.waiters.most_common()),
                    holders=tuple(m.holders.most_common()),
                    where=tuple((s.node, s.total_wait_ns / 1e6) for s in waited),
                    worst_node=worst.node if worst is not None else None,
                    waits_per_s=d.contended / interval if fresh and interval else None,
                    wait_ms_per_s=d.total_wait_ns / 1e6 / interval if fresh and interval else None,
                )
            )
        tasks = []
        for t in sorted(found.stalls.tasks.values(), key=lambda t: (-t.total_ms, t.name)):
            before = tasks_before.get(t.name)
            rate = None
            if interval is not None:
                rate = _per_s(t.stalls, before.stalls if before else 0, interval)
            tasks.append(TaskRow(t.name, t.nodes, t.stalls, t.total_ms, t.cpu_ms, t.max_ms, rate))
        result = ContentionRound(at, nodes, found, tuple(locks), tuple(tasks), interval)
        self.last = result
        return result


def stall_lines(s: MergedStalls, *, stack_frames: int = 6) -> list[str]:
    """The loop's stalls in words: counts, CPU share, scheduling delay, the worst one
    and the innermost ``stack_frames`` of its stack (trio's own frames left out)."""
    if not s.nodes:
        return ["no stall figures yet"]
    if s.stalls:
        lines = [
            f"{s.stalls:,} stalls (steps over {s.threshold_ms:g} ms) in {s.steps:,} steps:"
            f" {fmt_ms(s.stall_ms_total)} in all, {fmt_ms(s.stall_cpu_ms_total)} of it on"
            f" the CPU ({s.cpu_stalls:,} over the threshold on CPU alone)"
        ]
    else:
        lines = [f"no stalls (steps over {s.threshold_ms:g} ms) in {s.steps:,} steps"]
    lines.append(
        f"scheduling delay: mean {fmt_ms(s.sched_delay_mean_ms)},"
        f" p99 {fmt_ms(s.worst_sched_p99_ms)}{' (worst node)' if s.nodes > 1 else ''},"
        f" max {fmt_ms(s.sched_delay_max_ms)}"
    )
    if s.worst_task is not None:
        on = f" on {s.worst_node}" if s.nodes > 1 else ""
        lines.append(f"worst: {fmt_ms(s.worst_stall_ms)} in {short_task(s.worst_task)}{on}")
        frames = own_frames(s.worst_stack)
        lines += (
            [f"  {short_site(frame)}" for frame in frames[-stack_frames:]] if stack_frames else []
        )
    return lines


_RUNTIME = ("trio/", "outcome/")


def own_frames(stack: Sequence[str]) -> tuple[str, ...]:
    """A stalled task's stack (outermost first) without the trio frames at its end:
    where the task's own code was, not trio's socket and trap internals below it."""
    end = len(stack)
    while end > 1 and short_site(stack[end - 1]).startswith(_RUNTIME):
        end -= 1
    return tuple(stack[:end])


def task_lines(tasks: Sequence[TaskRow], limit: int = 5) -> list[str]:
    """The tasks with the most stall time, one line each: ``3x 77ms (max 54ms) name``."""
    return [
        f"{t.stalls:>4}x {fmt_ms(t.total_ms):>6} (max {fmt_ms(t.max_ms)}) {t.short}"
        for t in tasks[:limit]
    ]


# -- profiles ------------------------------------------------------------------------


@dataclass
class CallNode:
    """One line of pyinstrument's text tree: a frame (``seconds`` of total time,
    ``function``, ``location``), or ``hidden`` library frames collapsed into one."""

    seconds: float | None
    function: str
    location: str = ""
    hidden: int = 0
    children: list[CallNode] = field(default_factory=list)

    def walk(self) -> Iterable[CallNode]:
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


# The tree's drawing (unicode or ASCII, as pyinstrument's ConsoleRenderer draws it)
# before a line's content; each level of depth is three characters of it.
_PREFIX = re.compile(r"^[ │├└─|`-]*")
_FRAME = re.compile(r"^(?P<time>\d+(?:\.\d+)?)%? (?P<function>.+?)(?:  (?P<location>.*))?$")
_HIDDEN = re.compile(r"^\[(?P<count>\d+) frames hidden\]\s*(?P<libraries>.*)$")


def parse_call_tree(text: str) -> list[CallNode]:
    """The frames of pyinstrument's text output (``output_text``), as trees.

    A line's depth is where its content starts (three characters a level). A
    ``[N frames hidden]`` line is a node of its own, parent of the frames drawn under
    it. Lines that are not part of a tree (the banner, ``Profile at``) are skipped.
    """
    roots: list[CallNode] = []
    stack: list[tuple[int, CallNode]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        prefix = _PREFIX.match(line)
        start = prefix.end() if prefix else 0
        content = line[start:]
        if not content:
            continue
        depth = start // 3
        if start == 0 and not _FRAME.match(content):
            stack.clear()  # out of any tree: the banner or a heading
            continue
        frame, hidden = _FRAME.match(content), _HIDDEN.match(content)
        if hidden is not None:
            node = CallNode(None, f"[{hidden['count']} frames hidden]", hidden["libraries"])
            node.hidden = int(hidden["count"])
        elif frame is not None:
            node = CallNode(float(frame["time"]), frame["function"], frame["location"] or "")
        else:
            continue
        if depth > 0 and not stack:
            continue  # a deeper line with no tree above it: not pyinstrument's
        while stack and stack[-1][0] >= depth:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((depth, node))
    return roots
