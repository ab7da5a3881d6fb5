"""Warm streams: request/reply over one long-lived libp2p stream per peer.

Opening a libp2p stream costs a multistream-select negotiation (~3.5 ms of CPU
at each end here) and a task per stream on the receiving side; a first contact
also dials. So a node keeps, per peer it sends to, one outgoing stream of the
protocol open and sends every request on it as a frame (:mod:`node.p2p.frames`)
with its own request id; the peer answers each with a reply frame of that id,
in any order. The two directions of a peer pair use two streams (each end
writes requests on its own), over the same connection.

Guarantees of :meth:`WarmStreams.request`:

- the payload reaches the peer's handler and its reply comes back, or
  :class:`RequestFailed` is raised naming the peer and the last cause;
- a stream that breaks (reset, closed, the peer restarted) fails every request in
  flight on it; each is retried on a new stream, dialling again if need be, up to
  ``attempts`` times in all. A request may thus reach the handler more than once:
  handlers must be idempotent (the job protocol's are);
- a request that gets no reply within ``timeout`` is retried the same way.

Streams of peers unused for ``idle_s`` are closed, and so are the connections
of the least recently used peers beyond ``max_peers`` (neither while a request
is in flight), so a node does not keep a full mesh.

:meth:`WarmStreams.statistics` counts what a request cost: how many opened a
stream or dialled first (the rest went out on a warm stream).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from node.p2p.compat import remote_peer
from node.p2p.frames import MAX_REQUEST_ID, FrameDecoder, FrameError, Kind, encode_frame
from profiles.locks import TrioLock

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[bytes]]
"""(remote peer id, request payload) -> reply payload. Must not raise: an exception
is logged and the request goes unanswered (the sender times out)."""

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 3
DEFAULT_IDLE_S = 120.0
DEFAULT_MAX_PEERS = 64
_READ_BYTES = 1 << 16
_CLOSE_S = 2.0


class RequestFailed(RuntimeError):
    """No reply came; the text names the peer, the protocol and the last cause."""


@dataclass(frozen=True, slots=True)
class WarmStreamStatistics:
    """``requests``: sent (a retry is not a new request); ``opened``: requests that
    had to open a stream first, ``dialled``: those that had to dial too (so
    ``requests - opened`` went out on a warm stream); ``retries``: attempts after
    the first; ``failed``: requests that got no reply at all; ``broken``: streams
    that broke; ``served``: requests answered; ``malformed``: incoming streams
    dropped for bytes that are not frames; ``closed_idle``: streams and
    connections closed for idleness or the peer cap."""

    peers: int
    incoming: int
    requests: int
    opened: int
    dialled: int
    retries: int
    failed: int
    broken: int
    served: int
    malformed: int
    closed_idle: int


class _Broken(Exception):
    """The stream a request was on broke before its reply came."""


@dataclass(eq=False)
class _Waiter:
    done: trio.Event = field(default_factory=trio.Event)
    reply: bytes | None = None
    error: str | None = None


class _Outgoing:
    """One outgoing warm stream: its writes, and the requests waiting for replies."""

    def __init__(self, peer: str, stream: INetStream, lock_name: str) -> None:
        self.peer = peer
        self.stream = stream
        self.write_lock = TrioLock(lock_name, fast_acquire=True)
        self.waiting: dict[int, _Waiter] = {}
        self.ids = itertools.count(1)
        self.broken: str | None = None

    def next_id(self) -> int:
        request_id = next(self.ids)
        if request_id > MAX_REQUEST_ID:
            self.ids = itertools.count(1)
            request_id = next(self.ids)
        return request_id

    def fail(self, reason: str) -> None:
        self.broken = reason
        waiting, self.waiting = self.waiting, {}
        for waiter in waiting.values():
            waiter.error = reason
            waiter.done.set()


class WarmStreams:
    """Request/reply on ``protocol`` over ``host``; :meth:`run` must be running."""

    def __init__(
        self,
        host: IHost,
        protocol: str,
        handler: Handler,
        *,
        max_payload: int,
        timeout: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        idle_s: float = DEFAULT_IDLE_S,
        max_peers: int = DEFAULT_MAX_PEERS,
    ) -> None:
        if attempts < 1 or max_peers < 1 or timeout <= 0 or idle_s <= 0:
            raise ValueError("attempts and max_peers must be >= 1, timeout and idle_s > 0")
        self._host = host
        self._protocol = TProtocol(protocol)
        self._handler = handler
        self._max_payload = max_payload
        self.timeout = timeout
        self._attempts = attempts
        self._idle_s = idle_s
        self._max_peers = max_peers
        self._lock_name = f"p2p.warm{protocol}"
        self._outgoing: dict[str, _Outgoing] = {}
        self._opening: dict[str, trio.Event] = {}
        self._last_used: dict[str, float] = {}
        self._incoming = 0
        self._nursery: trio.Nursery | None = None
        self._counts = dict.fromkeys(
            ("requests", "opened", "dialled", "retries", "failed", "broken", "served"), 0
        ) | {"malformed": 0, "closed_idle": 0}

    # -- lifecycle -------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``protocol`` on the host and keep streams until cancelled; then close
        every outgoing stream."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._host.set_stream_handler(self._protocol, self._serve)
                nursery.start_soon(self._close_idle)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for outgoing in list(self._outgoing.values()):
                outgoing.fail("shutting down")
            self._outgoing.clear()

    # -- sending ---------------------------------------------------------------

    async def request(self, peer: str, payload: bytes, *, timeout: float | None = None) -> bytes:
        """``payload`` to ``peer``'s handler; its reply. See the module's guarantees.

        Raises :class:`RequestFailed` when no attempt got a reply, ValueError for a
        payload over ``max_payload``.
        """
        if len(payload) > self._max_payload:
            raise ValueError(f"a request of {len(payload)} bytes exceeds {self._max_payload}")
        timeout = self.timeout if timeout is None else timeout
        self._counts["requests"] += 1
        last = "no attempt"
        for attempt in range(self._attempts):
            if attempt:
                self._counts["retries"] += 1
                await trio.sleep(0.1 * attempt)
            try:
                return await self._attempt(peer, payload, timeout)
            except _Broken as exc:
                last = str(exc)
            except trio.TooSlowError:
                last = f"no reply within {timeout:g}s"
            except Exception as exc:  # py-libp2p raises many kinds on a failed dial
                last = repr(exc)
                with contextlib.suppress(Exception):
                    self._host.get_network().unblock_peer(ID.from_base58(peer))
        self._counts["failed"] += 1
        raise RequestFailed(f"no reply from {peer} on {self._protocol}: {last}")

    async def _attempt(self, peer: str, payload: bytes, timeout: float) -> bytes:
        with trio.fail_after(timeout):
            outgoing = await self._stream_to(peer)
            request_id = outgoing.next_id()
            waiter = outgoing.waiting[request_id] = _Waiter()
            self._last_used[peer] = trio.current_time()
            try:
                async with outgoing.write_lock:
                    if outgoing.broken is not None:
                        raise _Broken(outgoing.broken)
                    await outgoing.stream.write(encode_frame(Kind.REQUEST, request_id, payload))
            except _Broken:
                raise
            except Exception as exc:
                self._break(outgoing, f"write failed: {exc!r}")
                raise _Broken(f"write failed: {exc!r}") from None
            try:
                await waiter.done.wait()
            finally:
                outgoing.waiting.pop(request_id, None)
        if waiter.error is not None:
            raise _Broken(waiter.error)
        assert waiter.reply is not None
        return waiter.reply

    async def _stream_to(self, peer: str) -> _Outgoing:
        """The warm stream to ``peer``, opened (and the peer dialled) if need be; one
        opening at a time per peer."""
        while True:
            outgoing = self._outgoing.get(peer)
            if outgoing is not None and outgoing.broken is None:
                return outgoing
            opening = self._opening.get(peer)
            if opening is None:
                break
            await opening.wait()
        if self._nursery is None:
            raise _Broken("not running")
        opening = self._opening[peer] = trio.Event()
        try:
            target = ID.from_base58(peer)
            if not self._host.get_network().get_connections(target):
                self._counts["dialled"] += 1
            self._counts["opened"] += 1
            stream = await self._host.new_stream(target, [self._protocol])
            outgoing = self._outgoing[peer] = _Outgoing(peer, stream, self._lock_name)
            self._nursery.start_soon(self._read_replies, outgoing)
            return outgoing
        finally:
            del self._opening[peer]
            opening.set()

    async def _read_replies(self, outgoing: _Outgoing) -> None:
        decoder = FrameDecoder(self._max_payload)
        reason = "closed by the peer"
        try:
            while outgoing.broken is None:
                data = await outgoing.stream.read(_READ_BYTES)
                if not data:
                    break
                for frame in decoder.feed(data):
                    if frame.kind is not Kind.REPLY:
                        raise FrameError("a request on our own outgoing stream")
                    waiter = outgoing.waiting.pop(frame.request_id, None)
                    if waiter is not None:  # else: its request timed out meanwhile
                        waiter.reply = frame.payload
                        waiter.done.set()
        except FrameError as exc:
            reason = f"malformed reply: {exc}"
        except Exception as exc:  # EOF, reset, connection gone: py-libp2p's many kinds
            reason = f"stream broke: {exc!r}"
        finally:
            self._break(outgoing, reason)

    def _break(self, outgoing: _Outgoing, reason: str) -> None:
        if outgoing.broken is not None:
            return
        self._counts["broken"] += 1
        outgoing.fail(reason)
        if self._outgoing.get(outgoing.peer) is outgoing:
            del self._outgoing[outgoing.peer]
        if self._nursery is not None:
            self._nursery.start_soon(_close_quietly, outgoing.stream, True)

    # -- serving ---------------------------------------------------------------

    async def _serve(self, stream: INetStream) -> None:
        """Answer every request frame on an incoming stream until it ends."""
        peer = remote_peer(stream)
        decoder = FrameDecoder(self._max_payload)
        write_lock = TrioLock(self._lock_name, fast_acquire=True)
        self._incoming += 1
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        data = await stream.read(_READ_BYTES)
                    except Exception:  # EOF or reset: the peer closed it
                        break
                    if not data:
                        break
                    try:
                        frames = decoder.feed(data)
                    except FrameError as exc:
                        self._counts["malformed"] += 1
                        log.info("dropping a %s stream from %s: %s", self._protocol, peer, exc)
                        await _close_quietly(stream, reset=True)
                        break
                    self._last_used[peer] = trio.current_time()
                    for frame in frames:
                        if frame.kind is Kind.REQUEST:
                            nursery.start_soon(self._answer, stream, write_lock, peer, frame)
        finally:
            self._incoming -= 1
            with trio.CancelScope(shield=True):
                await _close_quietly(stream)

    async def _answer(
        self, stream: INetStream, write_lock: TrioLock, peer: str, frame: Any
    ) -> None:
        try:
            reply = await self._handler(peer, frame.payload)
        except Exception:
            log.exception("%s handler failed on a request from %s", self._protocol, peer)
            return
        try:
            async with write_lock:
                await stream.write(encode_frame(Kind.REPLY, frame.request_id, reply))
            self._counts["served"] += 1
        except Exception as exc:  # the stream broke: the sender retries
            log.debug("reply to %s on %s lost: %r", peer, self._protocol, exc)

    # -- idleness --------------------------------------------------------------

    async def _close_idle(self) -> None:
        """Close idle streams, then connections beyond ``max_peers``, LRU first."""
        while True:
            await trio.sleep(min(30.0, self._idle_s / 4))
            now = trio.current_time()
            for peer, outgoing in list(self._outgoing.items()):
                idle = now - self._last_used.get(peer, now) > self._idle_s
                if idle and not outgoing.waiting:
                    self._counts["closed_idle"] += 1
                    outgoing.fail("closed for idleness")
                    del self._outgoing[peer]
                    await _close_quietly(outgoing.stream)
            await self._cap_connections()

    async def _cap_connections(self) -> None:
        network = self._host.get_network()
        connected = [p.to_base58() for p in self._host.get_connected_peers()]
        excess = len(connected) - self._max_peers
        if excess <= 0:
            return
        busy = {p for p, o in self._outgoing.items() if o.waiting}
        by_age = sorted(
            (p for p in connected if p not in busy), key=lambda p: self._last_used.get(p, 0.0)
        )
        for peer in by_age[:excess]:
            self._counts["closed_idle"] += 1
            outgoing = self._outgoing.pop(peer, None)
            if outgoing is not None:
                outgoing.fail("connection closed for the peer cap")
            self._last_used.pop(peer, None)
            with contextlib.suppress(Exception):
                await network.close_peer(ID.from_base58(peer))

    def statistics(self) -> WarmStreamStatistics:
        return WarmStreamStatistics(
            peers=len(self._outgoing), incoming=self._incoming, **self._counts
        )


async def _close_quietly(stream: INetStream, reset: bool = False) -> None:
    with trio.move_on_after(_CLOSE_S), contextlib.suppress(Exception):
        await (stream.reset() if reset else stream.close())
