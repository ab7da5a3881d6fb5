"""Rate-limited warnings: at most one per key per interval, counting the rest.

Lock and stall warnings come in bursts (one slow disk write makes every waiter
late); a node logs the first of a burst and says how many it held back.
"""

from __future__ import annotations

import threading
import time


class WarningLimiter:
    """Admits one warning per key per ``interval_s``; thread-safe.

    At most ``max_keys`` keys are remembered; past that the memory is dropped, which
    lets at most one early warning per key through.

    Raises ``ValueError`` for a negative interval or fewer than one key.
    """

    def __init__(self, interval_s: float = 1.0, *, max_keys: int = 1000) -> None:
        if not interval_s >= 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self._interval_ns = int(interval_s * 1e9)
        self._max_keys = max_keys
        self._mutex = threading.Lock()  # slow path only: warnings are rare
        # key -> (time of the last warning admitted, warnings held back since)
        self._last: dict[object, tuple[int, int]] = {}

    def clear(self) -> None:
        """Forget every key: the next warning of each is admitted."""
        with self._mutex:
            self._last.clear()

    def admit(self, key: object, now_ns: int | None = None) -> int | None:
        """None if a warning for ``key`` was admitted less than an interval ago (this
        one is counted); otherwise how many were held back since the last one."""
        now = time.perf_counter_ns() if now_ns is None else now_ns
        with self._mutex:
            last = self._last.get(key)
            if last is None and len(self._last) >= self._max_keys:
                self._last.clear()
            if last is not None and now - last[0] < self._interval_ns:
                self._last[key] = (last[0], last[1] + 1)
                return None
            self._last[key] = (now, 0)
            return last[1] if last is not None else 0


def suppressed_note(count: int) -> str:
    """The tail of a warning that followed ``count`` held-back ones."""
    return f"; {count} similar warning(s) suppressed" if count else ""
