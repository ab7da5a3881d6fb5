"""A node's libp2p transport: its two hosts, the job topic, and direct messages.

Both hosts carry the node's one key (so one peer id). The *gossip host* dials the
bootstrap peers and carries gossipsub (:mod:`node.p2p.gossip`) and the membership
exchange with those neighbours; the *direct host* carries job messages and
bitswap. Job messages go to whichever node was offered a job or requested one,
so over time they connect many pairs of nodes; on one host every such connection
also became a gossip peer (more mesh links and IHAVEs per message), which at 50
nodes made gossip alone saturate this 2-core machine.

Guarantees:

- Direct messages travel on warm streams (:mod:`node.p2p.streams`): one
  long-lived stream per peer and protocol, a frame per message, each answered by
  an :class:`~node.messages.Ack`. :meth:`Transport.send` retries on a new stream
  when one breaks and raises :class:`TransportError` when every attempt failed.
- A direct frame that does not decode, or is not a direct message, is answered
  with a negative ack and counted; it never reaches the node.
- A message a node sends to itself is delivered locally, without a stream.
- Every message is counted by channel, direction and kind (``statistics().messages``:
  ``"direct.out.Bid"``, ``"gossip.in.JobAnnounced"``, ...); an offered node's
  answer inside an ack counts as a message of its own kind.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.keys import KeyPair
from libp2p.network.config import RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from node import messages
from node.messages import Ack, Message, MessageError
from node.p2p import compat
from node.p2p.gossip import Gossip, GossipCheck, GossipHandler
from node.p2p.streams import RequestFailed, WarmStreams, WarmStreamStatistics

log = logging.getLogger(__name__)

_ANNOUNCED_IP = re.compile(r"^/ip4/[^/]+/")

DIAL_TIMEOUT_S = 10.0
# Room in a direct frame for an ack and its answer beside the largest message.
_FRAME_SLACK = 4096

DirectHandler = Callable[[str, Message], Awaitable[Ack]]
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
"""(remote peer id, request bytes) -> reply bytes, for extra request/reply protocols."""


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
    # By "channel.direction.Kind", e.g. "direct.out.JobOffered".
    messages: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    streams: WarmStreamStatistics | None = None  # the job protocol's warm streams

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def _peer_id(peer: str) -> ID:
    return ID.from_base58(peer)


class Transport:
    """One node's libp2p hosts, its gossip topic and its direct protocols."""

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
        announce: str | None = None,
        heartbeat_interval: int = 1,
    ) -> None:
        compat.apply()  # before any host exists; raises Libp2pMismatch if the pin moved
        self._listen = multiaddr.Multiaddr(f"/ip4/{host}/tcp/{listen_port}")
        self._host = new_host(key_pair=key_pair, listen_addrs=[self._listen])
        self._direct_listen = multiaddr.Multiaddr(f"/ip4/{host}/tcp/{direct_port}")
        self._direct = new_host(key_pair=key_pair, listen_addrs=[self._direct_listen])
        for libp2p_host in (self._host, self._direct):
            # One try per dial: the callers retry (``connect``, the warm streams), and
            # the swarm's own backoff (0.1 + 0.2 + 0.4 s) delayed every offer to a dead
            # node past the point where the next node is offered anyway.
            libp2p_host.get_network().retry_config = RetryConfig(max_retries=0)
        self.peer_id: str = self._host.get_id().to_base58()
        self._announce = announce
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._messages: Counter[str] = Counter()
        self._gossip = Gossip(
            self._host,
            check=gossip_check,
            handler=on_gossip,
            dropped=self._dropped,
            counted=self._count_message,
            heartbeat_interval=heartbeat_interval,
        )
        self._on_direct = on_direct
        self._jobs = WarmStreams(
            self._direct,
            messages.JOB_PROTOCOL,
            self._serve_direct,
            max_payload=messages.MAX_MESSAGE_BYTES + _FRAME_SLACK,
        )
        self._extra = {
            protocol: WarmStreams(
                self._host,
                protocol,
                partial(self._serve_extra, protocol, handler),
                max_payload=messages.MAX_MESSAGE_BYTES,
            )
            for protocol, handler in (extra_protocols or {}).items()
        }

    # -- lifecycle -------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen, join the gossip topic and serve the direct protocols until exit."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._host.run(listen_addrs=[self._listen]))
            await stack.enter_async_context(self._direct.run(listen_addrs=[self._direct_listen]))
            await stack.enter_async_context(self._gossip.running())
            nursery = await stack.enter_async_context(trio.open_nursery())
            for streams in (self._jobs, *self._extra.values()):
                await nursery.start(streams.run)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    def _addrs_of(self, host: Any) -> list[str]:
        """``host``'s listen addresses as peers are to dial them: with the announced
        address in place of the bound one (e.g. 0.0.0.0), each ending in /p2p/."""
        suffix = f"/p2p/{self.peer_id}"
        addrs = [str(a) for a in host.get_addrs()]
        if self._announce is not None:
            addrs = [_ANNOUNCED_IP.sub(f"/ip4/{self._announce}/", a, count=1) for a in addrs]
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
        (bitswap, :mod:`node.p2p.exchange`): never the gossip host, whose links
        must not grow with whom a node exchanges content."""
        return self._direct

    async def connect(self, addr: str, *, attempts: int = 8) -> bool:
        """Dial ``addr`` (a /p2p multiaddr) from the gossip host, retrying while the
        peer comes up. Returns whether it connected. A failed dial puts the peer on
        py-libp2p's 60 s negative cache, so each retry unblocks it first."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        delay = 0.2
        for attempt in range(attempts):
            try:
                with trio.fail_after(DIAL_TIMEOUT_S):
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
        """Teach the direct host how to reach ``peer``'s direct host. Raises
        ValueError for an address that does not parse."""
        try:
            maddrs = [multiaddr.Multiaddr(a.split("/p2p/")[0]) for a in addrs]
        except Exception as exc:  # multiaddr raises several kinds
            raise ValueError(f"bad address for {peer}: {exc}") from None
        if maddrs:
            self._direct.get_peerstore().add_addrs(_peer_id(peer), maddrs, 3600)

    # -- gossip ----------------------------------------------------------------

    async def publish(self, message: Message) -> None:
        """Gossip ``message`` on the job topic."""
        await self._gossip.publish(message)

    def topic_peers(self) -> int:
        return len(self._gossip.topic_peers())

    def neighbours(self) -> list[str]:
        """Connected peers that are in the job network (subscribed to its topic)."""
        return self._gossip.topic_peers()

    def mesh_peers(self) -> int:
        return self._gossip.mesh_size()

    # -- direct ----------------------------------------------------------------

    async def send(self, peer: str, message: Message, *, timeout: float | None = None) -> Ack:
        """Deliver ``message`` to ``peer`` and return its acknowledgement (with the
        peer's answer to an offer).

        Retries on a new stream when one breaks or no ack comes within ``timeout``
        (not on a negative ack). Raises :class:`TransportError` if no attempt got
        through or the ack is malformed.
        """
        self._count_message("direct", "out", message)
        if peer == self.peer_id:  # delivered here: counted as the network would
            self._count_message("direct", "in", message)
            ack = await self._on_direct(peer, message)
            if ack.answer is not None:
                self._count_message("direct", "out", ack.answer)
        else:
            try:
                reply = await self._jobs.request(peer, messages.encode(message), timeout=timeout)
                ack = messages.decode_ack(reply)
            except (RequestFailed, MessageError) as exc:
                self._counts["direct_failed"] += 1
                raise TransportError(str(exc)) from None
        if ack.answer is not None:
            self._count_message("direct", "in", ack.answer)
        return ack

    async def request(
        self, peer: str, protocol: str, data: bytes, *, timeout: float | None = None
    ) -> bytes:
        """One request on one of the ``extra_protocols``, from the gossip host to a
        neighbour's, and its reply (each attempt waits ``timeout`` s, the streams'
        default if None). Raises :class:`TransportError` naming the peer when no
        attempt got through."""
        try:
            reply = await self._extra[protocol].request(peer, data, timeout=timeout)
        except RequestFailed as exc:
            raise TransportError(str(exc)) from None
        if not reply:
            raise TransportError(f"{peer} could not answer on {protocol}")
        return reply

    async def _serve_direct(self, remote: str, payload: bytes) -> bytes:
        try:
            message = messages.decode(payload)
        except MessageError as exc:
            self._dropped["direct_malformed"] += 1
            return messages.encode_ack(Ack(False, str(exc)))
        self._count_message("direct", "in", message)
        if not isinstance(message, messages.DIRECT_TYPES):
            self._dropped["direct_wrong_channel"] += 1
            return messages.encode_ack(Ack(False, f"{type(message).__name__} is not direct"))
        try:
            ack = await self._on_direct(remote, message)
        except Exception as exc:
            self._dropped["direct_handler_error"] += 1
            log.exception("direct handler failed on %s", type(message).__name__)
            ack = Ack(False, f"internal error: {type(exc).__name__}")
        if ack.answer is not None:
            self._count_message("direct", "out", ack.answer)
        return messages.encode_ack(ack)

    async def _serve_extra(
        self, protocol: str, handler: RequestHandler, remote: str, payload: bytes
    ) -> bytes:
        try:
            return await handler(remote, payload)
        except Exception as exc:  # answered empty: the asker raises TransportError
            self._dropped[f"{protocol.strip('/').split('/')[1]}_failed"] += 1
            log.debug("%s request from %s failed: %r", protocol, remote, exc)
            return b""

    # -- counting ----------------------------------------------------------------

    def _count_message(self, channel: str, direction: str, message: Message) -> None:
        self._counts[f"{channel}_{direction}"] += 1
        self._messages[f"{channel}.{direction}.{type(message).__name__}"] += 1

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
            messages=MappingProxyType(dict(self._messages)),
            streams=self._jobs.statistics(),
        )
