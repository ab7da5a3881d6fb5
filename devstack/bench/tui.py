"""``devstack bench tui``: the TUI on a live devstack, as a user sees it.

Runs the app headless on the devstack (Textual's test harness stands in for the
terminal) and reports: the time from start to a table whose every row shows live
figures; the time from a key, posted as the terminal driver posts it, to its effect
(a view switch, a cursor move), for ``--keys`` keys spread over the poll rounds, with
the longest the event loop was ever blocked meanwhile; and the app's CPU over
``--seconds`` of watching (per cent of a core), with its poll rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from textual import events

from devstack.bench.harness import BenchError, bench_cluster, report, say, summarize
from tui.app import HOME, VIEWS, BacalhauApp
from tui.format import MISSING
from tui.source import ClusterSource, NodeStatus
from tui.widgets.node_table import NodeTable

SIZE = (120, 40)
_DEADLINE_S = 60.0


async def _until(predicate: Callable[[], bool], what: str, timeout: float = _DEADLINE_S) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise BenchError(f"the TUI did not show {what} within {timeout:g}s")
        await asyncio.sleep(0.005)


def _live(app: BacalhauApp, nodes: int) -> bool:
    try:
        table = app.screen.query_one(NodeTable)
    except Exception:  # the home view is not mounted yet
        return False
    rows = list(table.records.values())
    return len(rows) == nodes and all(
        row.status is NodeStatus.UP and table.cell_text(row.peer_id, "cpu") != MISSING
        for row in rows
    )


def _warmed_up(app: BacalhauApp) -> bool:
    """Every view mounted once and the app back home (it does so right after start)."""
    try:
        return all(app.get_screen_stack(view.mode) for view in VIEWS) and app.current_mode == HOME
    except KeyError:
        return False


async def _key_to_effect(app: BacalhauApp, keys: int) -> tuple[list[float], list[float]]:
    """Milliseconds from each key to its effect, and the event loop's blocks meanwhile."""
    lags: list[float] = []
    probing = True

    async def probe() -> None:
        while probing:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((time.perf_counter() - started - 0.005) * 1000)

    async def timed(key: str, char: str | None, done: Callable[[], bool]) -> float:
        started = time.perf_counter()
        app.post_message(events.Key(key, char))
        await _until(done, f"the effect of key {key!r}", 10.0)
        return (time.perf_counter() - started) * 1000

    prober = asyncio.create_task(probe())
    effects = []
    try:
        for i in range(keys):
            await asyncio.sleep(0.11 + 0.05 * (i % 4))  # spread over the poll rounds
            if i % 3 < 2:
                key, mode = ("j", "jobs") if app.current_mode == HOME else ("n", HOME)
                effects.append(await timed(key, key, lambda m=mode: app.current_mode == m))
                continue
            if app.current_mode != HOME:
                continue
            table = app.screen.query_one(NodeTable)
            row = table.cursor_row
            key = "up" if row == table.row_count - 1 else "down"
            effects.append(await timed(key, None, lambda t=table, r=row: t.cursor_row != r))
    finally:
        probing = False
        await prober
    return effects, lags


async def _measure(state_dir: Any, nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    app = BacalhauApp(ClusterSource(state_dir), refresh=args.refresh)
    async with app.run_test(size=SIZE):
        await _until(lambda: _live(app, nodes), f"{nodes} live rows")
        live_s = time.perf_counter() - started
        await _until(lambda: _warmed_up(app), "every view mounted")
        say(f"timing {args.keys} keys while the app polls every {app.refresh_interval:g}s")
        effects, lags = await _key_to_effect(app, args.keys)
        await _until(lambda: app.current_mode == HOME, "the home view")
        say(f"watching for {args.seconds:g}s")
        rounds, cpu, wall = app.source.statistics().rounds, time.process_time(), time.perf_counter()
        await asyncio.sleep(args.seconds)  # the window measured, not a wait for a state
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stats = app.source.statistics()
    return {
        "bench": "tui",
        "nodes": nodes,
        "refresh_s": app.refresh_interval,
        "live_table_s": round(live_s, 2),
        "key_to_effect_ms": summarize(effects),
        "loop_blocked_max_ms": round(max(lags, default=0.0), 1),
        "watch_s": round(wall, 1),
        "cpu_percent_of_core": round(100 * cpu / wall, 1),
        "poll_rounds": stats.rounds - rounds,
        "poll_round_ms_max": stats.max_round_ms,
    }


def run(args: argparse.Namespace) -> int:
    """``devstack bench tui``."""
    load = os.getloadavg()[0]
    with bench_cluster(
        args.nodes, args.state_dir if args.reuse else None, hosts=args.hosts
    ) as cluster:
        nodes = len(cluster.state.nodes)
        result = asyncio.run(_measure(cluster.state_dir, nodes, args)) | cluster.describe()
    report(result, args.json, _text, load)
    return 0


def _text(result: dict[str, Any]) -> str:
    keys = result["key_to_effect_ms"]
    return "\n".join(
        [
            f"TUI on {result['nodes']} nodes (polling every {result['refresh_s']:g}s)",
            f"  every row live after      {result['live_table_s']:.2f} s",
            f"  key to effect             median {keys['median']:.1f} ms, p95 {keys['p95']:.1f}"
            f" ms, max {keys['max']:.1f} ms ({keys['n']} keys)",
            f"  event loop blocked        at most {result['loop_blocked_max_ms']:.1f} ms",
            f"  CPU while watching        {result['cpu_percent_of_core']:.1f} % of a core over"
            f" {result['watch_s']:g} s, {result['poll_rounds']} poll rounds"
            f" (slowest {result['poll_round_ms_max'] or 0:.0f} ms)",
        ]
    )
