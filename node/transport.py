"""The node's libp2p transport: host, gossipsub topics and the direct stream protocol.

Owns every libp2p object of a node: two hosts with the node's one key (so one
peer id). The *gossip host* dials the bootstrap peers and carries gossipsub and
the membership exchange with those neighbours; the *direct host* carries job
messages. Job messages go to whichever node bid or requested, so over time they
connect most pairs of nodes; on one host every such connection also became a
gossip peer (more mesh links and IHAVEs per message), which at 50 nodes made
gossip alone saturate this 2-core machine. Guarantees:

- Gossip is validated before it is delivered or forwarded: a message that does not
  decode, or that the node's ``gossip_check`` refuses, is dropped and counted.
- Subscriptions are drained at once into a bounded channel of our own, so
  py-libp2p's 32-message subscription queue never overflows (LIBP2P-NOTES trap 4).
- A direct message is one stream: a length-prefixed msgpack frame out, an
  :class:`~node.messages.Ack` back. :meth:`Transport.send` retries a failed
  attempt and raises :class:`TransportError` when every attempt failed.
- A message a node sends to itself is delivered locally, without a stream.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import libp2p.network.swarm
import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p import new_host
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.net_stream import INetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.secure_session import SecureSession
from libp2p.tools.anyio_service import background_trio_service

from node import messages
from node.messages import Ack, Message, MessageError

log = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
_JOB_PROTOCOL = TProtocol(messages.JOB_PROTOCOL)
_LENGTH = struct.Struct(">I")
STREAM_TIMEOUT_S = 10.0
SEND_ATTEMPTS = 3
# Far above any steady rate; only a stuck consumer fills it, and then we count drops.
_INBOX_SIZE = 4096

# LIBP2P-NOTES trap 2: after a successful dial, py-libp2p 0.8.1 still waits out
# the 250 ms head start it gives an address before racing the next one. A node
# listens on one address, so there is nothing to race: 0 makes a first contact
# (a bid to a requester never dialed before) ~15 ms instead of ~250 ms.
libp2p.network.swarm._HAPPY_EYEBALLS_DELAY = 0.0


def _drain_without_views(self: SecureSession, n: int | None) -> bytes:
    """py-libp2p 0.8.1's ``SecureSession._drain`` slices a memoryview of its read buffer
    and relies on it dying with the call. Under a profiler (pyinstrument, as
    ``/api/v1/debug/profile`` runs) the view outlives the call, the next close of the
    buffer raises BufferError mid-frame, and yamux loses the framing and drops the
    connection (seen moving 256 KiB bitswap blocks). Reading the buffer makes no view."""
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


SecureSession._drain = _drain_without_views  # type: ignore[method-assign]

GossipCheck = Callable[[str, Message], str | None]
"""(signer peer id, message) -> None to accept, or the reason to drop it."""
GossipHandler = Callable[[str, Message], Awaitable[None]]
DirectHandler = Callable[[str, Message], Awaitable[Ack]]
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
"""(remote peer id, request frame) -> reply frame, for extra request/response protocols."""


class TransportError(RuntimeError):
    """A direct message could not be delivered; the text names the peer."""


@dataclass(frozen=True)
class TransportStatistics:
    connected_peers: int  # on the gossip host
    direct_peers: int  # on the direct host
    topic_peers: int
    mesh_peers: int
    gossip_in: int
    gossip_out: int
    direct_in: int
    direct_out: int
    direct_failed: int
    dropped: Mapping[str, int]

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def _peer_id(peer: str) -> ID:
    return ID.from_base58(peer)


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError(f"stream closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: INetStream) -> bytes:
    (length,) = _LENGTH.unpack(await _read_exactly(stream, _LENGTH.size))
    if length > messages.MAX_MESSAGE_BYTES:
        raise MessageError(f"frame of {length} bytes exceeds {messages.MAX_MESSAGE_BYTES}")
    return await _read_exactly(stream, length)


async def write_frame(stream: INetStream, data: bytes) -> None:
    await stream.write(_LENGTH.pack(len(data)) + data)


class _GuardedPubsub(Pubsub):
    """py-libp2p 0.8.1's pubsub stream handler lets a protobuf ``DecodeError``
    (bytes that are not an RPC, from a broken or hostile peer) escape, and it ends
    the whole node. Handle it as the parse errors it already handles: reset the
    stream, forget the peer, and count it."""

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


async def _no_auto_connect() -> None:
    return None


def _stop_auto_connect(host: Any) -> None:
    """Stop py-libp2p 0.8.1 dialing on its own: its auto-connector dials every
    address in the peerstore until it has ~150 connections, so every requester a
    node ever heard of became a neighbour. A node chooses its peers: the gossip
    host its bootstrap peers, the direct host whom it messages."""
    host.get_network().auto_connector.maybe_connect = _no_auto_connect


class Transport:
    """One node's libp2p hosts, its gossip topics and its direct protocol."""

    def __init__(
        self,
        key_pair: KeyPair,
        *,
        listen_port: int,
        direct_port: int = 0,
        gossip_check: GossipCheck,
        on_gossip: GossipHandler,
        on_direct: DirectHandler,
        extra_protocols: Mapping[str, RequestHandler] | None = None,
        host: str = "127.0.0.1",
        heartbeat_interval: int = 1,
    ) -> None:
        self._listen = multiaddr.Multiaddr(f"/ip4/{host}/tcp/{listen_port}")
        self._host = new_host(key_pair=key_pair, listen_addrs=[self._listen])
        self._direct_listen = multiaddr.Multiaddr(f"/ip4/{host}/tcp/{direct_port}")
        self._direct = new_host(key_pair=key_pair, listen_addrs=[self._direct_listen])
        for libp2p_host in (self._host, self._direct):
            _stop_auto_connect(libp2p_host)
        self.peer_id: str = self._host.get_id().to_base58()
        self._gossipsub = GossipSub(
            protocols=GOSSIP_PROTOCOLS,
            degree=4,
            degree_low=3,
            degree_high=6,
            heartbeat_interval=heartbeat_interval,
            # A job network publishes bursts; every peer shares 127.0.0.1 here.
            spam_protection_enabled=False,
            eclipse_protection_enabled=False,
        )
        self._pubsub = _GuardedPubsub(
            self._host,
            self._gossipsub,
            strict_signing=True,
            on_garbage=partial(self.count_dropped, "gossip_rpc_malformed"),
        )
        self._gossip_check = gossip_check
        self._on_gossip = on_gossip
        self._on_direct = on_direct
        self._extra = dict(extra_protocols or {})
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen, join the gossip topics and serve the direct protocol until exit."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._host.run(listen_addrs=[self._listen]))
            await stack.enter_async_context(self._direct.run(listen_addrs=[self._direct_listen]))
            await stack.enter_async_context(background_trio_service(self._pubsub))
            await stack.enter_async_context(background_trio_service(self._gossipsub))
            await self._pubsub.wait_until_ready()
            self._direct.set_stream_handler(_JOB_PROTOCOL, self._handle_stream)
            for protocol, handler in self._extra.items():
                self._host.set_stream_handler(
                    TProtocol(protocol), partial(self._handle_request, protocol, handler)
                )
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._pubsub.set_topic_validator(messages.JOBS_TOPIC, self._validate_gossip, False)
            subscription = await self._pubsub.subscribe(messages.JOBS_TOPIC)
            send, receive = trio.open_memory_channel[rpc_pb2.Message](_INBOX_SIZE)
            nursery.start_soon(self._drain, subscription, send)
            nursery.start_soon(self._deliver, receive)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    def _addrs_of(self, host: Any) -> list[str]:
        suffix = f"/p2p/{self.peer_id}"
        addrs = (str(a) for a in host.get_addrs())
        return [a if a.endswith(suffix) else a + suffix for a in addrs]

    @property
    def addrs(self) -> list[str]:
        """The gossip host's listen addresses (what peers bootstrap from), each
        ending in ``/p2p/<peer id>``."""
        return self._addrs_of(self._host)

    @property
    def direct_addrs(self) -> list[str]:
        """The direct host's listen addresses: where job messages reach this node."""
        return self._addrs_of(self._direct)

    @property
    def direct_host(self) -> Any:
        """The direct host itself, for protocols that run their own streams on it
        (bitswap, :mod:`node.content.exchange`): never the gossip host, whose links
        must not grow with whom a node exchanges content."""
        return self._direct

    async def connect(self, addr: str, *, attempts: int = 8) -> bool:
        """Dial ``addr`` (a /p2p multiaddr), retrying while the peer comes up.

        Returns whether it connected. A failed dial puts the peer on py-libp2p's
        60 s negative cache (LIBP2P-NOTES trap 1), so each retry unblocks it first.
        """
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        delay = 0.2
        for attempt in range(attempts):
            try:
                with trio.fail_after(STREAM_TIMEOUT_S):
                    await self._host.connect(info)
                return True
            except Exception as exc:  # py-libp2p raises many kinds on a failed dial
                log.debug("dial %s failed (attempt %d): %s", addr, attempt + 1, exc)
                self._host.get_network().unblock_peer(info.peer_id)
                await trio.sleep(delay)
                delay = min(delay * 2, 3.0)
        log.warning("could not connect to %s after %d attempts", addr, attempts)
        return False

    def remember_addrs(self, peer: str, addrs: Sequence[str]) -> None:
        """Teach the direct host how to reach ``peer``'s direct host (e.g. a job's
        requester). Raises ValueError for an address that does not parse."""
        try:
            maddrs = [multiaddr.Multiaddr(a.split("/p2p/")[0]) for a in addrs]
        except Exception as exc:  # multiaddr raises several kinds
            raise ValueError(f"bad address for {peer}: {exc}") from None
        if maddrs:
            self._direct.get_peerstore().add_addrs(_peer_id(peer), maddrs, 3600)

    # -- gossip ----------------------------------------------------------------

    async def publish(self, topic: str, message: Message) -> None:
        await self._pubsub.publish(topic, messages.encode(message))
        self._counts["gossip_out"] += 1

    def _validate_gossip(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        # Runs inside py-libp2p: an exception escaping here would end the node.
        try:
            message = messages.decode(msg.data)
        except MessageError:
            self._dropped["gossip_malformed"] += 1
            return False
        except Exception:
            self._dropped["gossip_validator_error"] += 1
            log.exception("gossip decode failed")
            return False
        if not isinstance(message, messages.GOSSIP_TYPES):
            self._dropped["gossip_wrong_channel"] += 1
            return False
        try:
            reason = self._gossip_check(ID(msg.from_id).to_base58(), message)
        except Exception:
            self._dropped["gossip_validator_error"] += 1
            log.exception("gossip check failed")
            return False
        if reason is not None:
            self._dropped[f"gossip_{reason}"] += 1
            log.info("dropped gossip %s: %s", type(message).__name__, reason)
            return False
        return True

    async def _drain(self, subscription: Any, inbox: trio.MemorySendChannel[Any]) -> None:
        while True:
            msg = await subscription.get()
            try:
                inbox.send_nowait(msg)
            except trio.WouldBlock:
                self._dropped["gossip_inbox_full"] += 1

    async def _deliver(self, inbox: trio.MemoryReceiveChannel[Any]) -> None:
        async for msg in inbox:
            self._counts["gossip_in"] += 1
            try:
                message = messages.decode(msg.data)
                await self._on_gossip(ID(msg.from_id).to_base58(), message)
            except Exception:
                # One bad message must never stop delivery of the rest.
                self._dropped["gossip_handler_error"] += 1
                log.exception("gossip handler failed")

    def topic_peers(self, topic: str = messages.JOBS_TOPIC) -> int:
        return len(self._pubsub.peer_topics.get(topic, ()))

    def neighbours(self) -> list[str]:
        """Connected peers that are in the job network (subscribed to its topic)."""
        return [p.to_base58() for p in self._pubsub.peer_topics.get(messages.JOBS_TOPIC, ())]

    def mesh_peers(self, topic: str = messages.JOBS_TOPIC) -> int:
        return len(self._gossipsub.mesh.get(topic, ()))

    # -- direct ----------------------------------------------------------------

    async def send(self, peer: str, message: Message) -> Ack:
        """Deliver ``message`` to ``peer`` and return its acknowledgement.

        Retries up to ``SEND_ATTEMPTS`` times on transport failures (not on a
        negative ack). Raises :class:`TransportError` if no attempt got through.
        """
        self._counts["direct_out"] += 1
        if peer == self.peer_id:
            return await self._on_direct(peer, message)
        try:
            reply = await self._request(
                self._direct, peer, messages.JOB_PROTOCOL, messages.encode(message)
            )
            return messages.decode_ack(reply)
        except (TransportError, MessageError):
            self._counts["direct_failed"] += 1
            raise

    async def request(self, peer: str, protocol: str, data: bytes) -> bytes:
        """One frame out, one frame back, on a new stream of one of the
        ``extra_protocols``, from the gossip host to a neighbour's.

        Retries up to ``SEND_ATTEMPTS`` times; raises :class:`TransportError`
        naming the peer when no attempt got through.
        """
        return await self._request(self._host, peer, protocol, data)

    async def _request(self, host: Any, peer: str, protocol: str, data: bytes) -> bytes:
        target = _peer_id(peer)
        last: BaseException | None = None
        for attempt in range(SEND_ATTEMPTS):
            try:
                with trio.fail_after(STREAM_TIMEOUT_S):
                    stream = await host.new_stream(target, [TProtocol(protocol)])
                    try:
                        await write_frame(stream, data)
                        return await read_frame(stream)
                    finally:
                        await stream.close()
            except (Exception, trio.TooSlowError) as exc:
                last = exc
                host.get_network().unblock_peer(target)
                await trio.sleep(0.2 * (attempt + 1))
        raise TransportError(f"no reply from {peer} on {protocol}: {last!r}") from last

    async def _handle_request(
        self, protocol: str, handler: RequestHandler, stream: INetStream
    ) -> None:
        remote = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.fail_after(STREAM_TIMEOUT_S):
                await write_frame(stream, await handler(remote, await read_frame(stream)))
        except (Exception, trio.TooSlowError) as exc:
            self._dropped[f"{protocol.strip('/').split('/')[1]}_failed"] += 1
            log.debug("%s stream from %s failed: %r", protocol, remote, exc)
        finally:
            await stream.close()

    async def _handle_stream(self, stream: INetStream) -> None:
        remote = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.fail_after(STREAM_TIMEOUT_S):
                try:
                    message = messages.decode(await read_frame(stream))
                except MessageError as exc:
                    self._dropped["direct_malformed"] += 1
                    await write_frame(stream, messages.encode_ack(Ack(False, str(exc))))
                    return
                self._counts["direct_in"] += 1
                if not isinstance(message, messages.DIRECT_TYPES):
                    self._dropped["direct_wrong_channel"] += 1
                    ack = Ack(False, f"{type(message).__name__} is not a direct message")
                else:
                    ack = await self._on_direct(remote, message)
                await write_frame(stream, messages.encode_ack(ack))
        except (Exception, trio.TooSlowError) as exc:
            log.debug("direct stream from %s failed: %r", remote, exc)
        finally:
            await stream.close()

    def count_dropped(self, reason: str) -> None:
        """Count a message the node dropped after the transport delivered it."""
        self._dropped[reason] += 1

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            connected_peers=len(self._host.get_connected_peers()),
            direct_peers=len(self._direct.get_connected_peers()),
            topic_peers=self.topic_peers(),
            mesh_peers=self.mesh_peers(),
            gossip_in=self._counts["gossip_in"],
            gossip_out=self._counts["gossip_out"],
            direct_in=self._counts["direct_in"],
            direct_out=self._counts["direct_out"],
            direct_failed=self._counts["direct_failed"],
            dropped=MappingProxyType(dict(self._dropped)),
        )
