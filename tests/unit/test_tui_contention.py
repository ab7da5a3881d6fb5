"""The pure parts of the TUI's node and locks views: the cluster-wide ranking (on
:mod:`profiles.contention`'s merge, as ``devstack locks`` prints it), rates between
rounds, stall text, call sites, the pyinstrument call tree parser (against
pyinstrument's own renderer), following a log over ``GET /api/v1/logs``, and how log
lines and figures read."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Session

from devstack.locks import format_contention, top_site
from profiles.contention import merge
from tests.unit.tui_fake import CLUSTER
from tests.unit.tui_fake_locks import LOG_LINES, PROFILE, locks_document, log_answer
from tui.contention import (
    REPO_ROOT,
    CallNode,
    ContentionTracker,
    lock_key,
    own_frames,
    parse_call_tree,
    short_site,
    short_task,
    stall_lines,
    task_lines,
    valid_reports,
)
from tui.log_tail import LogCursor, LogRead, format_log_line
from tui.widgets.lock_sites import sites_text
from tui.widgets.trends import Trend, trend_text


def reports(round_: int) -> list[tuple[str, dict[str, Any]]]:
    return [(n["name"], locks_document(n, round_)) for n in CLUSTER["nodes"]]


# -- the ranking -----------------------------------------------------------------------


def test_rows_are_devstack_locks_merge_with_who_waited() -> None:
    docs = reports(1)
    found = ContentionTracker().update(docs, at=100.0)
    merged = merge(docs)
    # the same ranking `devstack locks` prints, one row per lock over the nodes
    assert [r.key for r in found.locks] == [lock_key(m.name, m.created_at) for m in merged.locks]
    assert found.found.stalls.stalls == merged.stalls.stalls
    assert found.nodes == ("node-0", "node-1", "node-2")
    assert found.interval_s is None and all(r.waits_per_s is None for r in found.locks)
    for row in found.locks:
        per_node = [
            (name, lock)
            for name, doc in docs
            for lock in doc["locks"]
            if lock_key(lock["name"], lock["created_at"]) == row.key
        ]
        assert row.nodes == len(per_node)
        assert row.contended == sum(lock["contended"] for _, lock in per_node)
        assert row.acquisitions == sum(lock["acquisitions"] for _, lock in per_node)
        assert row.max_wait_ms == max(lock["max_wait_ns"] for _, lock in per_node) / 1e6
        waited = {name for name, lock in per_node if lock["contended"]}
        assert {node for node, _ in row.where} == waited
        assert row.contended_nodes == len(waited)
        if waited:
            worst = max(per_node, key=lambda p: p[1]["max_wait_ns"])
            assert row.worst_node == worst[0]
            assert [ms for _, ms in row.where] == sorted((ms for _, ms in row.where), reverse=True)
        else:
            assert row.worst_node is None
    # the top lock of the captured cluster, as devstack locks prints it
    top = found.contended[0]
    assert top.name == "libp2p.yamux.write" and top.contended_nodes == 3
    assert top_site(merged.locks[0].waiters).startswith(top.waiters[0][0])
    assert top.top_waiter == "libp2p/stream_muxer/yamux/yamux.py:874 in _write_frame"
    assert "libp2p.yamux.write" in format_contention(merged)


def test_rates_are_between_rounds_of_the_same_nodes() -> None:
    tracker = ContentionTracker()
    first = tracker.update(reports(0), at=10.0)
    second = tracker.update(reports(1), at=11.5)
    assert second.interval_s == pytest.approx(1.5)
    before = {r.key: r for r in first.locks}
    for row in second.locks:
        old = before.get(row.key)
        grew = row.contended - (old.contended if old else 0)
        assert row.waits_per_s == pytest.approx(grew / 1.5)
        assert row.wait_ms_per_s is not None and row.wait_ms_per_s >= 0
    tasks_before = {t.name: t.stalls for t in first.tasks}
    for task in second.tasks:
        assert task.stalls_per_s == pytest.approx(
            (task.stalls - tasks_before.get(task.name, 0)) / 1.5
        )
    # a node missing from a round: no rate (the sums are over other nodes)
    third = tracker.update(reports(1)[:2], at=13.0)
    assert third.interval_s is None
    assert all(r.waits_per_s is None for r in third.locks)
    # a node restarted (its counters went back): no rate for what went back
    tracker.update(reports(1), at=14.0)
    restarted = reports(1)
    node, doc = restarted[0]
    zeroed = [dict(lock, contended=0, total_wait_ns=0) for lock in doc["locks"]]
    restarted[0] = (node, dict(doc, locks=zeroed))
    fifth = tracker.update(restarted, at=15.0)
    shrunk = [r for r in fifth.locks if r.contended < second.lock(r.key).contended]  # type: ignore[union-attr]
    assert shrunk and all(r.waits_per_s is None for r in shrunk)
    assert any(r.waits_per_s == 0 for r in fifth.locks)  # the others: rates as usual


def test_documents_of_the_wrong_shape_are_set_aside() -> None:
    good = reports(1)[0]
    bad = ("node-9", {"locks": [{"name": "x"}], "lock_warn_ms": 10.0})
    assert valid_reports([good, bad]) == ([good], ["node-9"])


_lock = hs.fixed_dictionaries(
    {
        "name": hs.sampled_from(["a", "b", "c", "libp2p.yamux.write"]),
        "created_at": hs.sampled_from(["x.py:1", "y.py:2"]),
        "acquisitions": hs.integers(0, 10_000),
        "contended": hs.integers(0, 500),
        "total_wait_ns": hs.integers(0, 10**10),
        "max_wait_ns": hs.integers(0, 10**9),
        "p99_wait_ns": hs.integers(0, 10**9),
        "max_hold_ns": hs.integers(0, 10**9),
        "top_waiters": hs.lists(hs.tuples(hs.sampled_from(["s1", "s2"]), hs.integers(1, 9))),
        "top_holders": hs.lists(hs.tuples(hs.sampled_from(["h1", "h2"]), hs.integers(1, 9))),
    }
)


def _node_doc(locks: list[dict[str, Any]]) -> dict[str, Any]:
    stalls = locks_document(CLUSTER["nodes"][0], 1)["stalls"]
    return {"node": "x", "lock_warn_ms": 10.0, "locks": locks, "stalls": stalls}


@given(
    hs.lists(
        hs.lists(_lock, max_size=6, unique_by=lambda lock: (lock["name"], lock["created_at"])),
        min_size=1,
        max_size=5,
    )
)
def test_ranking_sums_every_node_and_orders_by_wait(per_node: list[list[dict[str, Any]]]) -> None:
    docs = [(f"node-{i}", _node_doc(locks)) for i, locks in enumerate(per_node)]
    found = ContentionTracker().update(docs, at=1.0)
    keys = [r.key for r in found.locks]
    assert len(keys) == len(set(keys))
    assert len(keys) == len({(lk["name"], lk["created_at"]) for locks in per_node for lk in locks})
    waits = [r.total_wait_ms for r in found.locks]
    assert waits == sorted(waits, reverse=True)
    assert sum(r.contended for r in found.locks) == sum(
        lock["contended"] for locks in per_node for lock in locks
    )
    for row in found.locks:
        assert row.contended_nodes == len(row.where) <= row.nodes
        assert (row.worst_node is None) == (not row.where)
        counts = [n for _, n in row.waiters]
        assert counts == sorted(counts, reverse=True)  # most frequent site first
    assert found.contended == tuple(r for r in found.locks if r.contended)


# -- how it reads ---------------------------------------------------------------------


def test_call_sites_and_task_names_are_shortened() -> None:
    lib = "/x/.venv/lib/python3.11/site-packages/libp2p/yamux.py:874 in _write_frame"
    assert short_site(lib) == "libp2p/yamux.py:874 in _write_frame"
    assert short_site(f"{REPO_ROOT}node/store.py:257 in _locked") == "node/store.py:257 in _locked"
    assert short_site("<unknown>") == "<unknown>"
    assert short_task("libp2p.stream_muxer.yamux.yamux.Yamux.handle") == "Yamux.handle"
    assert short_task("push_msg[daemon=False]") == "push_msg[daemon=False]"
    assert short_task("a.b.c[x.y]") == "b.c[x.y]"
    assert short_task("<other tasks>") == "<other tasks>"


def test_stall_lines_say_counts_cpu_delay_and_the_worst_stack() -> None:
    found = ContentionTracker().update(reports(1), at=1.0)
    s = found.stalls
    lines = stall_lines(s, stack_frames=3)
    assert lines[0].startswith(f"{s.stalls:,} stalls (steps over 20 ms) in {s.steps:,} steps")
    assert "scheduling delay: mean" in lines[1] and "(worst node)" in lines[1]
    assert lines[2].startswith("worst: ") and f"on {s.worst_node}" in lines[2]
    # the innermost frames, but not trio's own below the task's code
    assert len(lines) == 6 and not any(line.startswith("  trio/") for line in lines[3:])
    assert lines[-1] == "  libp2p/io/trio.py:54 in read"
    assert own_frames(["trio/a.py:1 in f"]) == ("trio/a.py:1 in f",)
    assert own_frames([f"{REPO_ROOT}node/x.py:1 in g", "/v/site-packages/trio/_x.py:2 in h"]) == (
        f"{REPO_ROOT}node/x.py:1 in g",
    )
    quiet = merge([("n", _node_doc([]) | {"stalls": dict(s_doc(), stalls=0)})]).stalls
    assert stall_lines(quiet)[0].startswith("no stalls (steps over 20 ms)")
    assert task_lines(found.tasks, limit=2)[0].split("x", 1)[0].strip().isdigit()


def s_doc() -> dict[str, Any]:
    return dict(locks_document(CLUSTER["nodes"][0], 1)["stalls"], per_task=[], worst_task=None)


def test_sites_panel_lists_nodes_waiters_and_holders() -> None:
    found = ContentionTracker().update(reports(1), at=1.0)
    row = found.contended[0]
    text = _plain(sites_text(row, cluster=True))
    assert "waited on 3 of 3 nodes: node-" in text
    assert "libp2p/stream_muxer/yamux/yamux.py:874 in _write_frame" in text
    assert "waiters (where tasks waited):" in text and "holders" in text
    assert "waited on" not in _plain(sites_text(row, cluster=False))
    assert "no lock" in _plain(sites_text(None, cluster=True))


def _plain(renderable: Any) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_trend_lines_fill_the_width() -> None:
    trends = (
        Trend("cpu %", "12.0", (1.0, None, 50.0, 100.0), "100", lo=0.0, hi=100.0),
        Trend("rss", "83M", (), ""),
    )
    lines = trend_text(trends, 40).plain.split("\n")
    assert lines[0].startswith("cpu % 12.0 ") and lines[0].endswith("▁ ▅█ max 100")
    assert len(lines[0]) == 40  # the sparkline takes what the labels leave
    assert lines[1].rstrip() == "rss    83M"


# -- the call tree ----------------------------------------------------------------------


def test_parses_a_real_profile_with_hidden_frames() -> None:
    roots = parse_call_tree(PROFILE["text"])
    assert len(roots) == 1
    run = roots[0]
    assert (run.seconds, run.function, run.location) == (2.001, "run", "trio/_core/_run.py:2424")
    first = run.children[0]
    assert first.function == "Yamux._handle_incoming_with_ready_signal"
    hidden = first.children[0]
    assert hidden.hidden == 21 and hidden.location == "libp2p, trio"
    assert hidden.children[0].function == "Yamux.handle_incoming"
    assert hidden.children[0].children[0].function == "TrioLock.__aenter__"
    epoll = run.children[1]
    assert [c.function for c in epoll.children] == ["epoll.poll"]
    assert epoll.children[0].location == "<built-in>"
    # every line of the tree is a node, none twice
    tree_lines = [
        line for line in PROFILE["text"].splitlines() if "frames hidden" in line or " 0." in line
    ]
    assert sum(1 for _ in run.walk()) == len(tree_lines) + 1  # + the root, "2.001 run"
    for node in run.walk():  # a frame's time covers its children's
        if node.seconds is not None:
            assert sum(c.seconds or 0.0 for c in node.children) <= node.seconds + 0.002


def test_text_outside_a_tree_is_no_frame() -> None:
    assert parse_call_tree("") == []
    assert parse_call_tree("\n  No samples were recorded.\n") == []
    assert parse_call_tree("│  └─ 0.5 orphan  x.py:1\n") == []


_names = hs.sampled_from(["f", "g", "h", "k", "main", "work"])


@hs.composite
def _stacks(draw: hs.DrawFn) -> list[tuple[list[str], float]]:
    """Frame records as pyinstrument's sampler makes them: (call stack, seconds)."""
    records = []
    for _ in range(draw(hs.integers(1, 12))):
        depth = draw(hs.integers(1, 5))
        stack = ["main\x00/app/main.py\x001"] + [
            f"{draw(_names)}\x00/app/mod{i}.py\x00{10 + i}" for i in range(depth)
        ]
        records.append((stack, draw(hs.integers(1, 400)) / 1000))
    return records


def _expected(frame: Any, renderer: ConsoleRenderer) -> list[tuple[str, list[Any]]]:
    out = []
    for child in frame.children:
        if renderer.should_render_frame(child):
            name = f"{child.class_name}.{child.function}" if child.class_name else child.function
            out.append((name, _expected(child, renderer)))
        else:
            out.extend(_expected(child, renderer))
    return out


def _shape(node: CallNode) -> tuple[str, list[Any]]:
    return (node.function, [_shape(c) for c in node.children])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_stacks(), hs.booleans())
def test_parse_inverts_pyinstruments_renderer(
    records: list[tuple[list[str], float]], unicode: bool
) -> None:
    total = sum(seconds for _, seconds in records)
    session = Session(
        frame_records=records,  # type: ignore[arg-type]
        start_time=0.0,
        duration=total,
        min_interval=0.001,
        max_interval=0.001,
        sample_count=len(records),
        start_call_stack=["main\x00/app/main.py\x001"],
        target_description="test",
        cpu_time=total,
        sys_path=sys.path,
        sys_prefixes=[sys.prefix],
    )
    renderer = ConsoleRenderer(unicode=unicode, color=False, show_all=True)
    text = renderer.render(session)
    roots = parse_call_tree(text)
    root = renderer.preprocess(session.root_frame())
    assert root is not None
    name = f"{root.class_name}.{root.function}" if root.class_name else root.function
    assert [_shape(r) for r in roots] == [(name, _expected(root, renderer))]
    assert roots[0].seconds == pytest.approx(root.time, abs=0.001)


# -- the log --------------------------------------------------------------------------


def test_log_lines_read_as_time_level_logger_message(utc: None) -> None:
    line = json.dumps(
        {"ts": 1.5, "level": "warning", "logger": "profiles.locks", "pid": 1, "msg": "held 12 ms"}
    )
    text = format_log_line(line)
    assert text.plain == "00:00:01.500 WARN  profiles.locks held 12 ms"
    assert any("yellow" in str(span.style) for span in text.spans)
    error = json.loads(line) | {"level": "error", "exc": "Traceback\n  boom\n"}
    assert format_log_line(json.dumps(error)).plain.endswith("held 12 ms\nTraceback\n  boom")
    assert format_log_line("Failed to open TCP stream").plain == "Failed to open TCP stream"
    assert format_log_line('{"not": "ours"}').plain == '{"not": "ours"}'
    real = format_log_line(LOG_LINES[-1]).plain
    assert " WARN  profiles." in real and "{" not in real[:20]


def _ask(cursor: LogCursor, data: bytes, tail: int) -> LogRead:
    """One ``GET /api/v1/logs`` of a node whose log file holds ``data``, read."""
    offset, lines = log_answer(data, tail, cursor.after)
    return cursor.read({"path": "/x/node-0.log", "offset": offset, "lines": lines})


@given(hs.lists(hs.binary(max_size=40).map(lambda b: b.replace(b"\r", b"")), max_size=15))
def test_cursor_gives_every_line_once(chunks: list[bytes]) -> None:
    cursor = LogCursor()
    first = _ask(cursor, b"", 1000)
    assert first.restarted and first.lines == () and first.path == "/x/node-0.log"
    data = b""
    got: list[str] = []
    for chunk in chunks:
        data += chunk
        found = _ask(cursor, data, 1000)
        assert not found.restarted and not found.error
        got += found.lines
    want = [p.decode("utf-8", errors="replace") for p in data[: data.rfind(b"\n") + 1].split(b"\n")]
    assert got == want[:-1]


def test_cursor_starts_over_when_the_log_shrinks() -> None:
    cursor = LogCursor()
    data = b"a\nb\nc\n"
    assert _ask(cursor, data, 2) == LogRead(("b", "c"), restarted=True, path="/x/node-0.log")
    data += b"d\ne"
    assert _ask(cursor, data, 2).lines == ("d",)
    data += b"\n"
    assert _ask(cursor, data, 2).lines == ("e",)
    again = _ask(cursor, b"x\n", 2)  # truncated, or replaced by a shorter file
    assert again.restarted and again.lines == ("x",)
    assert _ask(cursor, b"x\ny\n", 2) == LogRead(("y",), path="/x/node-0.log")
    for wrong in (
        {},
        {"path": "p", "offset": "?", "lines": []},
        {"path": "p", "offset": 1, "lines": "a"},
    ):
        with pytest.raises((KeyError, TypeError, ValueError)):
            cursor.read(wrong)
