"""``devstack bench instruments``: what the profiling instruments cost on this machine.

The price of an instrumented lock against the plain one (ns per uncontended acquire
and release, :func:`profiles.locks.measure_overhead`) and of the event-loop stall
detector per task step (:func:`profiles.stalls.measure_overhead`). No cluster.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from devstack.bench.harness import report, say
from profiles.locks import measure_overhead as lock_overhead
from profiles.stalls import measure_overhead as stall_overhead


def run(args: argparse.Namespace) -> int:
    """``devstack bench instruments``."""
    load = os.getloadavg()[0]
    say(f"pricing the locks ({args.acquisitions} acquisitions each) and the stall detector")
    result: dict[str, Any] = {
        "bench": "instruments",
        "lock_ns_per_acquire": {
            k: round(v, 1) for k, v in lock_overhead(args.acquisitions).items()
        },
        "stall_detector_ns_per_step": {k: round(v, 1) for k, v in stall_overhead().items()},
    }
    report(result, args.json, _text, load)
    return 0


def _text(result: dict[str, Any]) -> str:
    lines = ["uncontended acquire+release (ns, the fastest of five chunks)"]
    lines += [f"  {name:<24} {ns:>8.1f}" for name, ns in result["lock_ns_per_acquire"].items()]
    lines.append("stall detector per task step (ns, the fastest of three runs)")
    lines += [
        f"  {name:<24} {ns:>8.1f}" for name, ns in result["stall_detector_ns_per_step"].items()
    ]
    return "\n".join(lines)
