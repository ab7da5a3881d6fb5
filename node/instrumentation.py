"""What a node process instruments: its locks (its own and py-libp2p's) and its loop.

The node's own locks are :mod:`profiles.locks` ones where they are made. py-libp2p
makes plain ``trio.Lock`` objects inside its connections and streams, and those are
where a node's tasks queue behind each other under load (every stream of a
connection writes its frames under the connection's one write lock). Those are
swapped for instrumented locks right after the object that owns them is made, so
that contention anywhere in the node shows up in one registry.

They are swapped for ``fast_acquire`` locks: taking a free one does not yield.
py-libp2p's yamux reader takes a stream's lock while it holds the connection's
streams lock; with trio's always-yielding acquire it parked there with the outer
lock held, and every reader of every stream on that connection queued behind it
(the contention hunt in the README has the figures).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import trio
from libp2p.network.stream.net_stream import NetStream
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from profiles.locks import REGISTRY, LockRegistry, TrioLock
from profiles.stalls import StallDetector

log = logging.getLogger(__name__)

# owner class -> {attribute holding a trio.Lock: the lock's name in the statistics}
LIBP2P_LOCKS: dict[type, dict[str, str]] = {
    Yamux: {"_write_lock": "libp2p.yamux.write", "streams_lock": "libp2p.yamux.streams"},
    YamuxStream: {
        "window_lock": "libp2p.yamux.stream.window",
        "close_lock": "libp2p.yamux.stream.close",
    },
    NetStream: {"_state_lock": "libp2p.stream.state"},
}

_installed: set[type] = set()


def instrument_libp2p_locks(registry: LockRegistry = REGISTRY) -> None:
    """From now on, every lock named in :data:`LIBP2P_LOCKS` is a :class:`TrioLock`
    of ``registry``. Idempotent; affects objects made after the call only.

    An attribute that is missing, or is not a plain ``trio.Lock`` (py-libp2p changed),
    is left alone and logged once, never an error.
    """
    for owner, locks in LIBP2P_LOCKS.items():
        if owner not in _installed:
            owner.__init__ = _swapping_init(owner.__init__, locks, registry)  # type: ignore[method-assign]
            _installed.add(owner)


def _swapping_init(
    init: Callable[..., None], locks: dict[str, str], registry: LockRegistry
) -> Callable[..., None]:
    missing: set[str] = set()

    @functools.wraps(init)
    def swapping_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        for attribute, name in locks.items():
            if type(getattr(self, attribute, None)) is trio.Lock:
                setattr(self, attribute, TrioLock(name, registry=registry, fast_acquire=True))
            elif attribute not in missing:
                missing.add(attribute)
                log.warning("%s.%s is not a trio.Lock: not instrumented", type(self), attribute)

    return swapping_init


def contention_report(registry: LockRegistry, stalls: StallDetector) -> dict[str, Any]:
    """The locks of ``registry`` (most waited-for first) and the loop's stalls as plain
    data: ``{"lock_warn_ms", "locks": [LockStatistics...], "stalls": StallStatistics}``."""
    locks = sorted(registry.statistics(), key=lambda s: (-s.total_wait_ns, -s.acquisitions))
    return {
        "lock_warn_ms": registry.warn_ms,
        "locks": msgspec.to_builtins(locks),
        "stalls": msgspec.to_builtins(stalls.statistics()),
    }
