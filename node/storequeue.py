"""Store calls from the trio loop, batched into one worker-thread hop.

sqlite blocks, so store calls run in a worker thread. Under a burst (50 bids
arriving at once) a thread hop per call queues the loop's own writes behind each
other; here every call waiting when the worker is free goes in one hop (group
commit). Each call is still its own transaction, and each caller gets its own
result or exception. Calls run in the order they were made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import outcome
import trio

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StoreQueueStatistics:
    calls: int
    batches: int
    largest_batch: int
    queued: int


class _Pending:
    __slots__ = ("call", "done", "result")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = trio.Event()
        self.result: outcome.Outcome | None = None


class StoreQueue:
    """Runs store calls in one worker thread, as many per hop as are waiting.

    :meth:`run` must be running (in the node's nursery) for calls to complete.
    """

    def __init__(self) -> None:
        self._queue: list[_Pending] = []
        self._wake = trio.Event()
        self._calls = 0
        self._batches = 0
        self._largest = 0

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the worker; return its result or raise its error.

        If the caller is cancelled while waiting, the call may still happen.
        """
        pending = _Pending(partial(fn, *args, **kwargs))
        self._queue.append(pending)
        self._wake.set()
        await pending.done.wait()
        assert pending.result is not None
        return pending.result.unwrap()

    def call_soon(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)`` without waiting for it: it runs after every
        call queued before it and before every call queued after it, so a caller can
        answer a peer at once and still have its write land before the next one.
        An exception is logged, not raised."""
        self._queue.append(_Pending(partial(_logged, fn, *args, **kwargs)))
        self._wake.set()

    async def run(self) -> None:
        """Serve calls until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                batch, self._queue = self._queue, []
                self._batches += 1
                self._calls += len(batch)
                self._largest = max(self._largest, len(batch))
                # Shielded: a batch in flight completes, so no caller waits forever.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_run_batch, batch)
                for pending in batch:
                    pending.done.set()

    def statistics(self) -> StoreQueueStatistics:
        return StoreQueueStatistics(
            calls=self._calls,
            batches=self._batches,
            largest_batch=self._largest,
            queued=len(self._queue),
        )


def _logged(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        log.exception("store call %s failed", getattr(fn, "__qualname__", fn))


def _run_batch(batch: list[_Pending]) -> None:
    for pending in batch:
        pending.result = outcome.capture(pending.call)
