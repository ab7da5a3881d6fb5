"""``devstack profile NODE|all [--memory] --seconds N``: CPU or memory profiles of nodes.

Each node profiles itself (CPU: ``POST /api/v1/debug/profile``, see
``profiles/cpu.py``; memory: ``POST /api/v1/debug/memory``, see
``profiles/memory.py``); all the nodes asked are profiled over the same seconds,
and each profile is written under ``STATE_DIR/profiles/`` (the files are
:mod:`profiles.saved`'s, shared with the TUI): a CPU profile printing the functions
that held the CPU longest (self time), a memory profile printing the allocation
sites that grew most and that hold most. Both print per node and summed over the
nodes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from devstack import state as st
from devstack.client import NodeClient
from devstack.state import ClusterState, NodeEntry
from profiles.memory import format_bytes, growth_line, size_line
from profiles.saved import (
    STAMP_FORMAT,
    SavedMemoryProfile,
    SavedProfile,
    profile_base,
    save_memory_profile,
    save_profile,
)

SHOWN_FRAMES = 8
SHOWN_SITES = 8

T = TypeVar("T")


def _each_node(
    cluster: ClusterState,
    refs: list[str],
    out_dir: Path,
    one: Callable[[NodeClient, str, Path], T],
) -> list[T]:
    """``one(client, node name, base)`` on the nodes ``refs`` name (``all``: every node),
    all at once.

    ``base`` is ``out_dir/NODE-TIMESTAMP``, the same stamp for every node. Raises
    StateError for a ref that names no node, NodeApiError if a node cannot be
    reached or refuses (e.g. a profile is already running on it).
    """
    everyone = refs == ["all"]
    nodes = list(cluster.nodes) if everyone else [st.find_node(cluster, r) for r in refs]
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime(STAMP_FORMAT)

    def run(node: NodeEntry) -> T:
        with NodeClient(node.api) as client:
            return one(client, node.name, profile_base(out_dir, node.name, stamp))

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        return list(pool.map(run, nodes))


def profile_nodes(
    cluster: ClusterState, refs: list[str], seconds: int, out_dir: Path, clock: str = "wall"
) -> list[SavedProfile]:
    """CPU-profile the nodes ``refs`` name at once, sampling by ``clock`` (``wall`` or
    ``cpu``), and save each; errors as :func:`_each_node`."""

    def one(client: NodeClient, node: str, base: Path) -> SavedProfile:
        return save_profile(node, client.profile(seconds, clock), base)

    return _each_node(cluster, refs, out_dir, one)


def memory_profile_nodes(
    cluster: ClusterState, refs: list[str], seconds: int, out_dir: Path
) -> list[SavedMemoryProfile]:
    """Memory-profile the nodes ``refs`` name at once and save each (errors: :func:`_each_node`)."""

    def one(client: NodeClient, node: str, base: Path) -> SavedMemoryProfile:
        return save_memory_profile(node, client.memory(seconds), base)

    return _each_node(cluster, refs, out_dir, one)


def _summed(
    rows: Iterable[dict[str, Any]], keys: tuple[str, ...], rank: str, limit: int
) -> list[dict[str, Any]]:
    """Rows with equal ``keys`` added up field by field; the ``rank`` field most first."""
    total: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        into = total.setdefault(tuple(row[k] for k in keys), {k: row[k] for k in keys})
        for name, value in row.items():
            if name not in keys:
                into[name] = into.get(name, 0) + value
    return sorted(total.values(), key=lambda row: row[rank], reverse=True)[:limit]


def summed_top(profiles: list[SavedProfile], limit: int = SHOWN_FRAMES) -> list[tuple[str, float]]:
    """Self time per "function (location)", summed over the profiles, most first."""
    rows = _summed((f for p in profiles for f in p.top), ("function", "location"), "self_s", limit)
    return [(f"{row['function']} ({row['location']})", row["self_s"]) for row in rows]


def format_profiles(profiles: list[SavedProfile], seconds: int) -> str:
    lines = []
    for profile in profiles:
        lines.append(f"{profile.node}: {profile.samples} samples over {seconds}s")
        lines += [f"  {path}" for path in profile.paths]
        for frame in profile.top[:SHOWN_FRAMES]:
            lines.append(
                f"  {frame['self_s'] * 1000:9.1f} ms  {frame['function']}  ({frame['location']})"
            )
    if len(profiles) > 1:
        lines.append(f"summed over {len(profiles)} nodes (self time):")
        lines += [f"  {s * 1000:9.1f} ms  {name}" for name, s in summed_top(profiles)]
    return "\n".join(lines)


def _site_tables(
    by_growth: Iterable[dict[str, Any]], by_size: Iterable[dict[str, Any]]
) -> list[str]:
    grown = [f"    {growth_line(**row)}" for row in list(by_growth)[:SHOWN_SITES]]
    largest = [f"    {size_line(**row)}" for row in list(by_size)[:SHOWN_SITES]]
    return ["  grown most:", *(grown or ["    (nothing grew)"]), "  largest:", *largest]


def format_memory_profiles(profiles: list[SavedMemoryProfile], seconds: int) -> str:
    """Per node its files and top sites by growth and by size; summed too when several."""
    lines = []
    for profile in profiles:
        lines.append(
            f"{profile.node}: memory over {seconds}s, {format_bytes(profile.current_bytes)}"
            f" traced at the end, {format_bytes(profile.peak_bytes)} peak"
        )
        lines += [f"  {path}" for path in profile.paths]
        lines += _site_tables(profile.top_by_growth, profile.top_by_size)
    if len(profiles) > 1:
        lines.append(f"summed over {len(profiles)} nodes:")
        sites = ("site", "function")
        growth = (row for p in profiles for row in p.top_by_growth)
        size = (row for p in profiles for row in p.top_by_size)
        lines += _site_tables(
            _summed(growth, sites, "size_diff_bytes", SHOWN_SITES),
            _summed(size, sites, "size_bytes", SHOWN_SITES),
        )
    return "\n".join(lines)


def add_profile_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("nodes", nargs="+", help="`all`, or nodes by index, node-N or peer id part")
    p.add_argument("--seconds", type=int, default=10, help="how long to sample, 1-300 (default 10)")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="sample by elapsed time (wall, default) or by the node's CPU time (cpu: where"
        " the CPU went, even when nodes outnumber cores)",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="a memory profile (tracemalloc: what grew and what is held) instead of CPU",
    )
