"""``devstack profile`` and ``locks``: where the nodes spend their time, and wait."""

from __future__ import annotations

import argparse
import time

from devstack.errors import ClusterError
from devstack.verbs import running_cluster


def profile_arguments(p: argparse.ArgumentParser) -> None:
    from devstack.profile import add_profile_parser

    add_profile_parser(p)


def profile(args: argparse.Namespace) -> int:
    from devstack import profile as profiling

    if not 1 <= args.seconds <= 300:
        raise ClusterError(f"--seconds must be between 1 and 300, got {args.seconds}")
    cluster = running_cluster(args.state_dir)
    out_dir = args.state_dir / "profiles"
    if args.memory:
        memory = profiling.memory_profile_nodes(cluster, args.nodes, args.seconds, out_dir)
        print(profiling.format_memory_profiles(memory, args.seconds))
    else:
        cpu = profiling.profile_nodes(cluster, args.nodes, args.seconds, out_dir, args.clock)
        print(profiling.format_profiles(cpu, args.seconds))
    return 0


def locks_arguments(p: argparse.ArgumentParser) -> None:
    from devstack.locks import add_locks_parser

    add_locks_parser(p)


def locks(args: argparse.Namespace) -> int:
    from devstack import locks as contention

    cluster = running_cluster(args.state_dir)
    found = contention.collect(cluster, args.nodes)
    if args.seconds is not None:
        time.sleep(args.seconds)  # the window the user asked to watch, not a wait
        found = contention.since(contention.collect(cluster, args.nodes), found)
        print(f"what happened over {args.seconds:g}s (maxima since each node started):")
    print(contention.format_contention(found, args.top))
    return 0
