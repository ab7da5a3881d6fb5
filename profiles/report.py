"""One process's contention as plain data: its instrumented locks and its loop's stalls.

``GET /api/v1/debug/locks`` and ``/api/v1/stats`` serve it; ``devstack locks`` and
the TUI's locks view read it back.
"""

from __future__ import annotations

from typing import Any

import msgspec

from profiles.locks import LockRegistry
from profiles.stalls import StallDetector


def contention_report(registry: LockRegistry, stalls: StallDetector) -> dict[str, Any]:
    """The locks of ``registry`` (most waited-for first) and the loop's stalls as plain
    data: ``{"lock_warn_ms", "locks": [LockStatistics...], "stalls": StallStatistics}``."""
    locks = sorted(registry.statistics(), key=lambda s: (-s.total_wait_ns, -s.acquisitions))
    return {
        "lock_warn_ms": registry.warn_ms,
        "locks": msgspec.to_builtins(locks),
        "stalls": msgspec.to_builtins(stalls.statistics()),
    }
