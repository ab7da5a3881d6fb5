"""``devstack profile NODE|all --seconds N``: CPU profiles of running nodes.

Each node samples its own event loop (``POST /api/v1/debug/profile``, see
``profiles/cpu.py``); all the nodes asked are profiled over the same seconds.
Each profile is written as ``NODE-TIMESTAMP.html``, ``.txt`` and
``.speedscope.json`` under ``STATE_DIR/profiles/``, and the functions that held the
CPU longest (self time) are printed, per node and summed over the nodes.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import state as st
from devstack.client import NodeClient
from devstack.state import ClusterState, NodeEntry

SHOWN_FRAMES = 8


@dataclass(frozen=True)
class SavedProfile:
    node: str
    samples: int
    paths: tuple[Path, ...]
    top: tuple[dict[str, Any], ...]


def profile_nodes(
    cluster: ClusterState, refs: list[str], seconds: int, out_dir: Path
) -> list[SavedProfile]:
    """Profile the nodes ``refs`` name (``all``: every node) at once and save each.

    Raises StateError for a ref that names no node, NodeApiError if a node cannot
    be reached or refuses (e.g. a profile is already running on it).
    """
    everyone = refs == ["all"]
    nodes = list(cluster.nodes) if everyone else [st.find_node(cluster, r) for r in refs]
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")

    def one(node: NodeEntry) -> SavedProfile:
        with NodeClient(node.api) as client:
            answer = client.profile(seconds)
        base = out_dir / f"{node.name}-{stamp}"
        paths = (
            base.with_suffix(".html"),
            base.with_suffix(".txt"),
            base.with_suffix(".speedscope.json"),
        )
        for path, key in zip(paths, ("html", "text", "speedscope"), strict=True):
            path.write_text(answer[key])
        return SavedProfile(node.name, answer["samples"], paths, tuple(answer["top"]))

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        return list(pool.map(one, nodes))


def summed_top(profiles: list[SavedProfile], limit: int = SHOWN_FRAMES) -> list[tuple[str, float]]:
    """Self time per "function (location)", summed over the profiles, most first."""
    total: Counter[str] = Counter()
    for profile in profiles:
        for frame in profile.top:
            total[f"{frame['function']} ({frame['location']})"] += frame["self_s"]
    return total.most_common(limit)


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


def add_profile_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("nodes", nargs="+", help="`all`, or nodes by index, node-N or peer id part")
    p.add_argument("--seconds", type=int, default=10, help="how long to sample, 1-300 (default 10)")
