"""Every reach into py-libp2p's private names and every patch of it, in one place.

py-libp2p is pinned (``libp2p==0.8.1`` in ``pyproject.toml``). What this project
needs from it beyond the public API is here, and nowhere else in the tree:

- patches of module globals and methods, applied once per process by :func:`apply`
  (the node calls it before it makes a host; the devstack launcher before it forks);
- subclasses that override or call private methods (:class:`GuardedPubsub`,
  :class:`HookedBitswap`).

:func:`apply` first checks the installed version and that every private name used
here still exists with the expected kind, and raises :class:`Libp2pMismatch`
naming each one that does not: a moved pin fails at start, not mid-job.

The patches, each with why (figures in the README's Architecture section):

1. ``swarm._HAPPY_EYEBALLS_DELAY = 0``: after a successful dial py-libp2p still
   waits out the 250 ms head start it gives an address before racing the next
   one; a node listens on one address, so there is nothing to race.
2. ``SecureSession._drain`` without memoryviews: the original slices a view of its
   read buffer and relies on it dying with the call; under a profiler the view
   outlives the call, the next close of the buffer raises ``BufferError`` mid
   frame, and yamux drops the connection.
3. ``AutoConnector.maybe_connect`` does nothing: the auto-connector dials every
   address in the peerstore up to ~150 connections, so every requester a node
   ever heard of became a neighbour. A node chooses its peers.
4. py-libp2p's own ``trio.Lock`` objects in yamux and streams (:data:`LIBP2P_LOCKS`)
   become instrumented :class:`~profiles.locks.TrioLock` ones right after their
   owner is made, so contention anywhere in a node shows in one registry. They are
   ``fast_acquire`` locks (taking a free one does not yield): yamux's reader takes
   a stream's lock while it holds the connection's streams lock, and with trio's
   always-yielding acquire it parked there with the outer lock held, so every
   reader of every stream on that connection queued behind it (the README's
   contention hunt has the figures).
5. ``yamux.RTT_MEASURE_INTERVAL``: every connection pinged its peer every 30 s
   from both ends to estimate an RTT nothing here reads; at 50 nodes with warm
   direct connections that was most of the idle cluster's messages.
6. yamux's tuning knobs (``PY_YAMUX_*`` environment variables) are read once, not
   on every frame read (``os.getenv`` per call), and ``RELEASE_ON_READ`` is off:
   py-libp2p 0.8.1 defaults it on, which sends a WINDOW_UPDATE frame for every
   read, so every small message cost a second encrypted frame back. Off, windows
   are topped up as go-yamux does, once half the window was read.
7. ``BasicHost._schedule_identify`` does nothing: py-libp2p runs the identify
   protocol (a stream, a signed peer record) on every new connection to cache
   the peer's protocols and addresses. A node here learns addresses from
   membership and negotiates each warm stream once, so identify was pure cost,
   paid again for every first contact between two nodes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import libp2p.host.basic_host as libp2p_basic_host
import libp2p.network.swarm as libp2p_swarm
import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.bitswap.block_store import BlockStore as Libp2pBlockStore
from libp2p.bitswap.client import BitswapClient
from libp2p.bitswap.pb.bitswap_pb2 import Message as BitswapMessage
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from profiles.locks import REGISTRY, LockRegistry, TrioLock

log = logging.getLogger(__name__)

PINNED_VERSION = "0.8.1"
# Seconds between yamux RTT pings (py-libp2p: 30); nothing here reads the RTT.
RTT_MEASURE_INTERVAL_S = 3600

# owner class -> {attribute holding a trio.Lock: the lock's name in the statistics}
LIBP2P_LOCKS: dict[type, dict[str, str]] = {
    Yamux: {"_write_lock": "libp2p.yamux.write", "streams_lock": "libp2p.yamux.streams"},
    YamuxStream: {
        "window_lock": "libp2p.yamux.stream.window",
        "close_lock": "libp2p.yamux.stream.close",
    },
    NetStream: {"_state_lock": "libp2p.stream.state"},
}

# (owner, name, what it must be): every private name this module relies on.
_CALLABLE, _VALUE = "callable", "value"
REQUIRED: tuple[tuple[Any, str, str], ...] = (
    (libp2p_swarm, "_HAPPY_EYEBALLS_DELAY", _VALUE),
    (libp2p_yamux, "RTT_MEASURE_INTERVAL", _VALUE),
    (libp2p_yamux, "_yamux_release_on_read", _CALLABLE),
    (libp2p_yamux, "_yamux_disable_hysteresis", _CALLABLE),
    (libp2p_yamux, "_yamux_batch_threshold_divisor", _CALLABLE),
    (libp2p_yamux, "_perf_yamux_debug_enabled", _CALLABLE),
    (libp2p_yamux, "_yamux_data_read_timeout", _CALLABLE),
    (libp2p_basic_host.BasicHost, "_schedule_identify", _CALLABLE),
    (SecureSession, "_drain", _CALLABLE),
    (SecureSession, "_reset_internal_buffer", _CALLABLE),
    (AutoConnector, "maybe_connect", _CALLABLE),
    (Pubsub, "stream_handler", _CALLABLE),
    (Pubsub, "_handle_dead_peer", _CALLABLE),
    (GossipSub, "_get_peers_to_send", _CALLABLE),
    (BitswapClient, "_on_message_queue_stream_opened", _CALLABLE),
    (BitswapClient, "_read_message", _CALLABLE),
    (BitswapClient, "_process_message", _CALLABLE),
    (BitswapClient, "_process_block_presences", _CALLABLE),
    (BitswapClient, "_process_wantlist", _CALLABLE),
    (BitswapClient, "_send_wantlist_to_peer", _CALLABLE),
    (BitswapClient, "get_or_create_message_queue", _CALLABLE),
)
# Instance attributes (not visible on the class): the method that must set each.
SET_BY: dict[tuple[type, str], tuple[str, ...]] = {
    (SecureSession, "_reset_internal_buffer"): ("buf", "low_watermark", "high_watermark"),
    (BitswapClient, "__init__"): ("_wantlist", "_nursery", "presence_manager"),
    **{(owner, "__init__"): tuple(locks) for owner, locks in LIBP2P_LOCKS.items()},
}


class Libp2pMismatch(RuntimeError):
    """The installed py-libp2p is not the one this code was written against; the
    message names the version and every missing or changed private name."""


_applied = False


def installed_version() -> str | None:
    try:
        return version("libp2p")
    except PackageNotFoundError:
        return None


def check() -> None:
    """Raise :class:`Libp2pMismatch` unless py-libp2p is the pinned version, every
    name in :data:`REQUIRED` is there, and every attribute of :data:`SET_BY` is
    still set where this module expects it."""
    problems: list[str] = []
    found = installed_version()
    if found != PINNED_VERSION:
        problems.append(f"libp2p {found or 'not installed'} is installed, not {PINNED_VERSION}")
    for owner, name, kind in REQUIRED:
        where = f"{getattr(owner, '__name__', owner)}.{name}"
        if not hasattr(owner, name):
            problems.append(f"{where} is gone")
        elif kind == _CALLABLE and not callable(getattr(owner, name)):
            problems.append(f"{where} is no longer callable")
    for (owner, method), attributes in SET_BY.items():
        # The names a function stores to are in its code object: no source is read.
        function = getattr(owner, method, None)
        code = getattr(inspect.unwrap(function), "__code__", None) if function else None
        names = code.co_names if code is not None else ()
        problems += [
            f"{owner.__name__}.{method} no longer sets {attribute}"
            for attribute in attributes
            if attribute not in names
        ]
    if problems:
        raise Libp2pMismatch(
            "py-libp2p does not match what node/p2p/compat.py patches: "
            + "; ".join(problems)
            + f". Install libp2p=={PINNED_VERSION} (pyproject.toml pins it), or update"
            " node/p2p/compat.py for the new version."
        )


def apply(registry: LockRegistry = REGISTRY, *, skip: Iterable[str] | None = None) -> None:
    """Check the pin (:func:`check`), then apply every patch of :data:`PATCHES` once per
    process; later calls do nothing. Affects hosts, connections and streams made
    after the call. Raises :class:`Libp2pMismatch` if the pin moved.

    ``skip`` names patches to leave out (default: those named, comma-separated, in
    ``$PYB_LIBP2P_UNPATCHED``), so ``devstack bench streams`` can measure what each
    is worth; ValueError for a name that is not a patch.
    """
    global _applied
    if _applied:
        return
    check()
    if skip is None:
        skip = [n for n in os.environ.get(UNPATCHED_ENV, "").split(",") if n.strip()]
    skipped = {name.strip() for name in skip}
    unknown = skipped - PATCHES.keys()
    if unknown:
        known = ", ".join(PATCHES)
        raise ValueError(f"no patch named {', '.join(sorted(unknown))}; known: {known}")
    for name, patch in PATCHES.items():
        if name not in skipped:
            patch(registry)
    _applied = True


def _patch_dial_delay(registry: LockRegistry) -> None:
    libp2p_swarm._HAPPY_EYEBALLS_DELAY = 0.0


def _patch_noise_drain(registry: LockRegistry) -> None:
    SecureSession._drain = _drain_without_views  # type: ignore[method-assign]


def _patch_auto_connect(registry: LockRegistry) -> None:
    AutoConnector.maybe_connect = _no_auto_connect  # type: ignore[method-assign]


def _patch_locks(registry: LockRegistry) -> None:
    for owner, locks in LIBP2P_LOCKS.items():
        owner.__init__ = _swapping_init(owner.__init__, locks, registry)  # type: ignore[misc]


def _patch_rtt_pings(registry: LockRegistry) -> None:
    libp2p_yamux.RTT_MEASURE_INTERVAL = RTT_MEASURE_INTERVAL_S


def _patch_yamux_tuning(registry: LockRegistry) -> None:
    _freeze_yamux_tuning()


def _patch_identify(registry: LockRegistry) -> None:
    libp2p_basic_host.BasicHost._schedule_identify = _no_identify  # type: ignore[method-assign]


# The patches by name, numbered as in the module docstring.
PATCHES: dict[str, Callable[[LockRegistry], None]] = {
    "dial_delay": _patch_dial_delay,
    "noise_drain": _patch_noise_drain,
    "auto_connect": _patch_auto_connect,
    "locks": _patch_locks,
    "rtt_pings": _patch_rtt_pings,
    "yamux_tuning": _patch_yamux_tuning,
    "identify": _patch_identify,
}
UNPATCHED_ENV = "PYB_LIBP2P_UNPATCHED"


# -- the patches -------------------------------------------------------------------


def _drain_without_views(self: SecureSession, n: int | None) -> bytes:
    available = self.high_watermark - self.low_watermark
    if available == 0:
        return b""
    self.buf.seek(self.low_watermark)
    result = self.buf.read(available if n is None else min(n, available))
    self.low_watermark += len(result)
    if self.low_watermark == self.high_watermark:
        self.buf.close()
        self._reset_internal_buffer()
    return result


async def _no_auto_connect(self: AutoConnector) -> None:
    return None


def _no_identify(self: Any, peer_id: ID, *, reason: str) -> None:
    return None


def _freeze_yamux_tuning() -> None:
    """Read yamux's ``PY_YAMUX_*`` knobs once; ``RELEASE_ON_READ`` off unless set."""
    release = os.environ.get("PY_YAMUX_RELEASE_ON_READ", "0").upper() in ("1", "TRUE", "YES")
    frozen = {
        "_yamux_release_on_read": release,
        "_yamux_disable_hysteresis": libp2p_yamux._yamux_disable_hysteresis(),
        "_yamux_batch_threshold_divisor": libp2p_yamux._yamux_batch_threshold_divisor(),
        "_perf_yamux_debug_enabled": libp2p_yamux._perf_yamux_debug_enabled(),
        "_yamux_data_read_timeout": libp2p_yamux._yamux_data_read_timeout(),
    }
    for name, value in frozen.items():
        setattr(libp2p_yamux, name, functools.partial(_constant, value))


def _constant(value: Any) -> Any:
    return value


def _swapping_init(
    init: Callable[..., None], locks: dict[str, str], registry: LockRegistry
) -> Callable[..., None]:
    @functools.wraps(init)
    def swapping_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        for attribute, name in locks.items():
            if type(getattr(self, attribute, None)) is trio.Lock:
                setattr(self, attribute, TrioLock(name, registry=registry, fast_acquire=True))

    return swapping_init


# -- streams -----------------------------------------------------------------------


def remote_peer(stream: INetStream) -> str:
    """The authenticated peer id at the other end of ``stream`` (the secure channel's)."""
    return stream.muxed_conn.peer_id.to_base58()


# -- gossip ------------------------------------------------------------------------


class GuardedPubsub(Pubsub):
    """py-libp2p 0.8.1's pubsub stream handler lets a protobuf ``DecodeError`` (bytes
    that are not an RPC, from a broken or hostile peer) escape, and it ends the whole
    node. Handle it as the parse errors it already handles: reset the stream, forget
    the peer, and call ``on_garbage``."""

    def __init__(self, *args: Any, on_garbage: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_garbage = on_garbage

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except DecodeError as exc:
            self._on_garbage()
            log.info("garbage on a gossip stream from %s: %s", stream.muxed_conn.peer_id, exc)
            with contextlib.suppress(Exception):
                await stream.reset()
            self._handle_dead_peer(stream.muxed_conn.peer_id)


class FloodPublishGossipSub(GossipSub):
    """Gossipsub with v1.1's flood publishing (go-libp2p's default): a node's own
    messages go to every peer in the topic, not only to its mesh.

    py-libp2p 0.8.1 sends them to the mesh alone, and a mesh can sit empty: on a
    20-node devstack the bootstrap node (connected to every other) was pruned by all
    its peers and, with each of them in backoff, grafted none for minutes, so every
    job it announced reached no node and ended short of bids. Forwarding others'
    messages is left to the mesh."""

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Iterable[ID]:
        topic_ids = list(topic_ids)
        chosen = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if pubsub is not None and origin == pubsub.my_id:
            for topic in topic_ids:
                chosen.update(pubsub.peer_topics.get(topic, ()))
            chosen.discard(origin)
        return chosen


# -- bitswap -----------------------------------------------------------------------


class BitswapHooks(Protocol):
    """What :class:`HookedBitswap` tells its owner (:class:`node.p2p.exchange.Exchange`)."""

    def stream_ended(self, peer: ID) -> None: ...
    def refused(self, cid: bytes, peer: ID) -> None: ...
    def wants_truncated(self) -> None: ...


class HookedBitswap(BitswapClient):
    """py-libp2p's bitswap client with what :mod:`node.p2p.exchange` needs (its notes
    4 to 6): answers read until their stream ends, DONT_HAVE heard, served
    wantlists bounded, and wants sent to and forgotten at one provider only."""

    def __init__(
        self, host: IHost, store: Libp2pBlockStore, hooks: BitswapHooks, *, max_wants: int
    ) -> None:
        super().__init__(host, store)
        self._hooks = hooks
        self._max_wants = max_wants

    def _on_message_queue_stream_opened(self, stream: INetStream, peer_id: ID) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._read_until_closed, stream, peer_id)

    async def _read_until_closed(self, stream: INetStream, peer_id: ID) -> None:
        """Read a peer's answers on the stream our wants go out on until it ends, then
        close it (the next want opens a fresh one) and tell the hooks."""
        try:
            while (message := await self._read_message(stream)) is not None:
                await self._process_message(message, peer_id, stream)
        except Exception as exc:  # a broken peer must not end the node
            log.info("bitswap stream from %s failed: %r", peer_id, exc)
        finally:
            deadline = trio.current_time() + 2.0
            with trio.CancelScope(shield=True, deadline=deadline), contextlib.suppress(Exception):
                await stream.close()
            self._hooks.stream_ended(peer_id)

    async def _process_block_presences(self, presences: Any, peer_id: ID) -> None:
        await super()._process_block_presences(presences, peer_id)
        for presence in presences:
            if presence.type == BitswapMessage.DontHave:
                self._hooks.refused(bytes(presence.cid), peer_id)

    async def _process_wantlist(
        self, wantlist: BitswapMessage.Wantlist, peer_id: ID, stream: INetStream
    ) -> None:
        if len(wantlist.entries) > self._max_wants:
            self._hooks.wants_truncated()
            del wantlist.entries[self._max_wants :]
        await super()._process_wantlist(wantlist, peer_id, stream)

    async def want_from(self, provider: ID, cids: Sequence[Any]) -> None:
        """Send WANT-BLOCK (with send-dont-have) for ``cids`` (py-libp2p CIDs) to
        ``provider`` only (``BitswapSession`` would broadcast)."""
        # Neither call yields to other tasks (the queue sends from its own task), so
        # no block can arrive, and be forgotten, between the two.
        for cid in cids:
            await self.want_block(cid, want_type=0, send_dont_have=True)
        await self._send_wantlist_to_peer(provider, list(cids))

    def forget(self, provider: ID, cids: Iterable[Any], *, cancel: bool) -> None:
        """Drop this client's state for ``cids`` wanted from ``provider``; with
        ``cancel`` tell the provider to drop them from its wantlist of this node."""
        cids = list(cids)
        if not cids:
            return
        presence = self.presence_manager
        for cid in cids:
            self._wantlist.pop(cid, None)
            presence.remove_have(provider, cid)
            presence.remove_dont_have(cid)
        if cancel:
            self.get_or_create_message_queue(provider).add_cancels(cids)
