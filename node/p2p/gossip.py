"""The job topic on gossipsub: publish, validate, deliver (the fallback path; README, dispatch).

Owns a node's pubsub and gossipsub routers on its gossip host. Guarantees:

- Gossip is validated before it is delivered or forwarded: a message that does
  not decode, is not a gossip message, or that the node's ``check`` refuses is
  dropped and counted by reason; a validator that raises drops the message too.
- Subscriptions are drained at once into a bounded channel of our own, so
  py-libp2p's 32-message subscription queue (which drops with only a log line)
  never overflows; a full channel of ours counts a drop.
- A handler that raises is logged and counted; delivery of the rest goes on.
- A node's own messages go to every peer in the topic, not only to its gossip mesh
  (flood publishing, :class:`~node.p2p.compat.FloodPublishGossipSub`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service

from node import messages
from node.messages import Message, MessageError
from node.p2p.compat import FloodPublishGossipSub, GuardedPubsub

log = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
# Far above any steady rate; only a stuck consumer fills it, and then we count drops.
_INBOX_SIZE = 4096

GossipCheck = Callable[[str, Message], str | None]
"""(signer peer id, message) -> None to accept, or the reason to drop it."""
GossipHandler = Callable[[str, Message], Awaitable[None]]


class Gossip:
    """The job topic of one node. :meth:`running` joins it until exit."""

    def __init__(
        self,
        host: IHost,
        *,
        check: GossipCheck,
        handler: GossipHandler,
        dropped: Counter[str],
        counted: Callable[[str, str, Message], None],
        heartbeat_interval: int = 1,
    ) -> None:
        self._gossipsub = FloodPublishGossipSub(
            protocols=GOSSIP_PROTOCOLS,
            degree=4,
            degree_low=3,
            degree_high=6,
            heartbeat_interval=heartbeat_interval,
            # A job network publishes bursts; every peer shares 127.0.0.1 here.
            spam_protection_enabled=False,
            eclipse_protection_enabled=False,
        )
        self.pubsub = GuardedPubsub(
            host,
            self._gossipsub,
            strict_signing=True,
            on_garbage=partial(dropped.update, ["gossip_rpc_malformed"]),
        )
        self._check = check
        self._handler = handler
        self._dropped = dropped
        self._counted = counted

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(background_trio_service(self.pubsub))
            await stack.enter_async_context(background_trio_service(self._gossipsub))
            await self.pubsub.wait_until_ready()
            nursery = await stack.enter_async_context(trio.open_nursery())
            self.pubsub.set_topic_validator(messages.JOBS_TOPIC, self._validate, False)
            subscription = await self.pubsub.subscribe(messages.JOBS_TOPIC)
            send, receive = trio.open_memory_channel[rpc_pb2.Message](_INBOX_SIZE)
            nursery.start_soon(self._drain, subscription, send)
            nursery.start_soon(self._deliver, receive)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    async def publish(self, message: Message) -> None:
        await self.pubsub.publish(messages.JOBS_TOPIC, messages.encode(message))
        self._counted("gossip", "out", message)

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
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
            reason = self._check(ID(msg.from_id).to_base58(), message)
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
            try:
                message = messages.decode(msg.data)
                self._counted("gossip", "in", message)
                await self._handler(ID(msg.from_id).to_base58(), message)
            except Exception:
                # One bad message must never stop delivery of the rest.
                self._dropped["gossip_handler_error"] += 1
                log.exception("gossip handler failed")

    def topic_peers(self) -> list[str]:
        """Connected peers subscribed to the job topic."""
        return [p.to_base58() for p in self.pubsub.peer_topics.get(messages.JOBS_TOPIC, ())]

    def mesh_size(self) -> int:
        return len(self._gossipsub.mesh.get(messages.JOBS_TOPIC, ()))
