"""What the node's roles share: identity, store, transport, and a task nursery.

Roles never reach into each other; they act through this context. Store calls
go through a :class:`~node.storequeue.StoreQueue` (sqlite blocks), so the loop never
waits on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from node.messages import Message
from node.metrics import PhaseLatencies
from node.models import JobEvent, now
from node.p2p.membership import Membership
from node.p2p.transport import Transport, TransportError
from node.store import Store
from node.storequeue import StoreQueue

T = TypeVar("T")
# A message sent with ``retry_for`` that could not be delivered goes again after this
# long, doubling up to the maximum.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 5.0
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskStatistics:
    """Tasks the roles started through :meth:`NodeContext.spawn`: ``live`` now (all
    of them belong to jobs: none is left once every job has ended and its slots
    are given back), ``spawned`` since the node started."""

    live: int
    spawned: int


@dataclass
class NodeContext:
    node_id: str
    api_url: str
    store: Store
    transport: Transport
    membership: Membership
    nursery: trio.Nursery
    store_queue: StoreQueue
    metrics: PhaseLatencies  # job latency per phase: roles observe, the API reads
    _live_tasks: int = 0
    _spawned: int = 0

    def statistics(self) -> TaskStatistics:
        return TaskStatistics(live=self._live_tasks, spawned=self._spawned)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in the store's worker thread (batched with others waiting)."""
        return await self.store_queue.call(fn, *args, **kwargs)

    def db_soon(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue a store write without waiting for it; it lands in order with every
        other store call (:meth:`~node.storequeue.StoreQueue.call_soon`)."""
        self.store_queue.call_soon(fn, *args, **kwargs)

    def event(self, job_id: str, kind: str, *, shard: int | None = None, **detail: Any) -> JobEvent:
        return JobEvent(
            job_id=job_id, kind=kind, at=now(), node=self.node_id, shard=shard, detail=detail
        )

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn`` in the node's nursery; an exception is logged, never fatal."""

        async def guarded() -> None:
            self._live_tasks += 1
            try:
                await fn(*args)
            except Exception:
                log.exception("task %s failed", getattr(fn, "__qualname__", fn))
            finally:
                self._live_tasks -= 1

        self._spawned += 1
        self.nursery.start_soon(guarded)

    async def send(self, peer: str, message: Message, *, retry_for: float = 0.0) -> bool:
        """Send a direct message; False (logged) if it could not be delivered or was
        refused. With ``retry_for`` seconds, a peer that cannot be reached (it may be
        restarting: README, failures) is tried again, backing off, until then; a
        refusal is final."""
        give_up = trio.current_time() + retry_for
        delay = RETRY_MIN_S
        while True:
            try:
                ack = await self.transport.send(peer, message)
            except TransportError as exc:
                if trio.current_time() + delay > give_up:
                    log.warning("%s", exc)
                    return False
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if not ack.ok:
                log.warning("%s refused %s: %s", peer, type(message).__name__, ack.error)
            return ack.ok
