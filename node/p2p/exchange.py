"""Owns moving blocks between nodes: py-libp2p's bitswap on the node's *direct* host,
serving every block of the node's :class:`~node.content.store.BlockStore` to any peer
that asks, and fetching the blocks of a tree this node lacks from providers it is told.

Why the direct host: bitswap dials whoever holds the content, as job messages
dial whoever bid; on the gossip host every such connection would also become a
gossip peer (see :mod:`node.p2p.transport`).

Guarantees:

- A block is stored only if it hashes to its CID and some fetch of this node asked
  for it (a peer cannot fill the disk with blocks nobody wanted); stored blocks are
  served from then on, so a node that fetched a tree serves it too.
- :meth:`Exchange.fetch` returns only when every block of the tree under ``root``
  is in the store. It walks the DAG as blocks arrive (a directory's or file node's
  links are wanted as soon as the node is in), keeping at most ``window`` blocks
  wanted from each provider, and asks another provider for a block one has said it
  has not got (bitswap DONT_HAVE).
- Failures raise, naming what is missing: the store's :class:`BlockNotFound` when a
  block is missing and no provider was named; a :class:`FetchError`:
  :class:`NotProvided` when every provider said it has not got a block,
  :class:`ProvidersUnreachable` when no provider could be dialled,
  :class:`FetchTimeout` at the deadline, plain :class:`FetchError` when a block
  could not be written; ``ContentError`` for malformed content.

py-libp2p 0.8.1 bitswap, read from ``libp2p/bitswap/`` (field notes):

1. ``BitswapClient.start()`` registers its stream handlers (``/ipfs/bitswap/1.2.0``,
   1.1.0, 1.0.0) on the host it is given, and a network notifee that drops a peer's
   state when its last connection closes; ``stop()`` removes both. Its per-peer
   message queues and response readers run only in the nursery given by
   ``set_nursery`` (call it first; without one, wants are sent and answers read in
   the caller's task). :meth:`Exchange.run` does both and stops it on the way out.
2. Its ``MerkleDag`` does not build kubo's DAG (README, py-libp2p), so it is not
   used: only the block store interface, adapted over ours by :class:`_StoreAdapter`.
3. Every block received is put in the store, wanted or not, and the stream it came
   on is not read again until the put returns. The adapter hands it to
   :meth:`Exchange.received`, which drops blocks no fetch wants (counted as
   ``unwanted``, duplicates included) and writes the others in tasks of their own.
4. ``BitswapSession`` waits out its timeout on a DONT_HAVE, re-sends WANT-BLOCK after a
   1 s sub-timeout even while the blocks are on their way (a 256 KiB block takes
   longer than that in a busy batch), and ``cancel_want`` sends a cancel to every
   connected peer, opening a bitswap stream to each. So fetching here wants blocks
   from one provider at a time and hears DONT_HAVE and cancels only at the provider
   asked (:class:`~node.p2p.compat.HookedBitswap`, which reaches into the client's
   private names).
5. A wantlist is served whole: every wanted block is read into memory before the
   first is sent. A peer could ask for gigabytes in one message, so serving reads at
   most :data:`MAX_WANTS_SERVED` entries of a message (a fetch here never wants more
   than ``window`` at once).
6. The reader of a peer's answers closes the stream as soon as no block is expected
   from that peer (e.g. after a DONT_HAVE), but the peer's message queue keeps writing
   wants on it, and a want that fails to write is dropped, not retried. Likewise a
   stream the peer closed (its 60 s idle timeout) still counts as writable. Wants went
   unanswered for good in tests. So this module's reader reads until the stream
   ends, then closes it (the queue opens a new one), and the fetches re-send that
   peer's wants in flight :data:`REWANT_DELAY_S` later, redialling it (a provider
   that cannot be dialled any more is dropped; its wants go to the others). As a
   last resort a fetch re-sends its wants after :data:`STALL_S` without a block.
7. It logs every wanted CID and every message at INFO; the node keeps libraries at
   WARNING (``node.logs``).
8. An empty block (an empty file's raw leaf) is never served: the server tests the
   block's bytes for truth, and sends neither it nor a DONT_HAVE. Its content is
   known from its CID, so a fetch stores it without asking anyone.
9. Moving 256 KiB blocks under a profiler broke connections: a noise read buffer
   bug, fixed for every host in :mod:`node.p2p.compat` (its patch 2).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.bitswap import block_store as libp2p_block_store
from libp2p.bitswap.cid import CIDInput
from libp2p.bitswap.cid import parse_cid as libp2p_parse_cid
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError

from node.content.cid import DAG_PB, Cid, parse_cid
from node.content.dagpb import decode_node
from node.content.errors import ContentError
from node.content.reader import aread_tree
from node.content.store import BlockNotFound, BlockStore, BlockStoreStatistics
from node.p2p.compat import HookedBitswap

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 32  # blocks wanted from one provider at once: 8 MiB of 256 KiB leaves
MAX_WANTS_SERVED = 256
STALL_S = 5.0  # no block for this long: re-send the outstanding wants
REWANT_DELAY_S = 0.5  # after a provider's answer stream ended, before wanting again
DIAL_TIMEOUT_S = 10.0
STOP_S = 2.0
SCAN_BATCH = 1024  # CIDs checked against the store in one worker-thread call
_EMPTY_DIGEST = hashlib.sha256(b"").digest()


class FetchError(Exception):
    """A tree could not be fetched; the message says which block and why."""


class NotProvided(FetchError):
    """Every provider asked said it has not got a block (bitswap DONT_HAVE)."""


class ProvidersUnreachable(FetchError):
    """No provider could be dialled (or none has a known address)."""


class FetchTimeout(FetchError):
    """The deadline passed with blocks still missing."""


@dataclass(frozen=True, slots=True)
class FetchReport:
    """What one :meth:`Exchange.fetch` did: blocks and bytes it brought in, and how long."""

    root: str
    blocks_fetched: int
    bytes_fetched: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ExchangeStatistics:
    """The store's figures and the exchange's since the node started."""

    store: BlockStoreStatistics
    fetches: int
    fetches_failed: int
    blocks_fetched: int
    bytes_fetched: int
    blocks_served: int
    bytes_served: int
    unwanted: int
    wants_truncated: int


def parse_providers(text: str, self_id: str = "") -> list[str]:
    """Peer ids from a comma-separated list, this node's own (``self_id``) left out.
    Raises ValueError naming an entry that is not a peer id."""
    peers = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            digest = ID.from_base58(entry).to_bytes()
        except ValueError:
            digest = b""
        # A multihash: identity (0x00) or sha2-256 (0x12), then the digest's length.
        valid = len(digest) > 2 and digest[0] in (0x00, 0x12) and digest[1] == len(digest) - 2
        if not valid:
            raise ValueError(f"{entry[:80]!r} is not a peer id")
        if entry != self_id and entry not in peers:
            peers.append(entry)
    return peers


def to_libp2p(cid: Cid) -> Any:
    """Our :class:`Cid` as the py-cid object py-libp2p's bitswap keys by."""
    return libp2p_parse_cid(cid.binary)


def from_libp2p(cid: CIDInput) -> Cid:
    """py-libp2p's CID (object, bytes or text) as our :class:`Cid`; raises ContentError."""
    return parse_cid(libp2p_parse_cid(cid).buffer)


class _StoreAdapter(libp2p_block_store.BlockStore):
    """py-libp2p's block store interface over ours. Disk reads, writes and hashing
    run in worker threads; a received block is handed to :meth:`Exchange.received`."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._store = exchange.store

    async def get_block(self, cid: CIDInput) -> bytes | None:
        ours = from_libp2p(cid)
        try:
            data = await self._exchange.in_thread(self._store.get, ours)
        except BlockNotFound:
            return None
        # Only the serving side reads through here (fetches use the store directly).
        self._exchange.count("blocks_served")
        self._exchange.count("bytes_served", len(data))
        return data

    async def put_block(self, cid: CIDInput, data: bytes) -> None:
        try:
            ours = from_libp2p(cid)
        except ContentError:  # a kind of CID no fetch here ever wants
            self._exchange.count("unwanted")
            return
        self._exchange.received(ours, data)

    async def has_block(self, cid: CIDInput) -> bool:
        # One stat() call: cheaper than the hop to a worker thread.
        return self._store.has(from_libp2p(cid))

    async def delete_block(self, cid: CIDInput) -> None:
        await self._exchange.in_thread(self._store.delete, from_libp2p(cid))

    def get_all_cids(self) -> list[bytes]:
        return [cid.binary for cid in self._store.cids()]


class Exchange:
    """Bitswap for one node: serves ``store`` on ``host`` and fetches into it.

    :meth:`run` must be running (it owns the client's tasks) for either to work.
    Not thread-safe: call it from the trio loop.
    """

    def __init__(
        self,
        host: IHost,
        store: BlockStore,
        *,
        window: int = DEFAULT_WINDOW,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.window = window
        # Disk and hashing work; bounded so a big fetch cannot take every worker thread.
        self.limiter = limiter or trio.CapacityLimiter(4)
        self._client = HookedBitswap(host, _StoreAdapter(self), self, max_wants=MAX_WANTS_SERVED)
        self._fetches: dict[Cid, set[_Fetch]] = {}  # wanted CID -> fetches waiting for it
        self._storing: set[Cid] = set()  # received, being written
        self._running: set[_Fetch] = set()
        self._nursery: trio.Nursery | None = None
        self._counts: Counter[str] = Counter()
        self._started = False

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve and fetch until cancelled; ``task_status.started()`` once serving."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._client.set_nursery(nursery)
            await self._client.start()
            self._started = True
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._started = False
                # Shielded so shutdown stops the client, bounded so it cannot hang it.
                with trio.CancelScope(shield=True, deadline=trio.current_time() + STOP_S):
                    await self._client.stop()

    async def in_thread(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a worker thread of the exchange's limiter."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def fetch(
        self, root: Cid, providers: Sequence[str] = (), *, timeout: float = 300.0
    ) -> FetchReport:
        """Make sure every block of the tree under ``root`` is in the store, wanting the
        missing ones from ``providers`` (peer ids; their direct addresses must be known
        to the host's peerstore, see ``Transport.remember_addrs``).

        With no providers this checks the tree is complete locally. Raises what the
        module docstring lists; whatever arrived before a failure stays stored.
        """
        if not self._started:
            raise RuntimeError("the exchange is not running")
        fetch = _Fetch(self, root, [ID.from_base58(p) for p in providers], timeout)
        self._counts["fetches"] += 1
        self._running.add(fetch)
        try:
            return await fetch.run()
        except BaseException:  # cancelled ones too (a client that went away)
            self._counts["fetches_failed"] += 1
            raise
        finally:
            self._running.discard(fetch)
            fetch.close()

    async def fetch_tree(
        self,
        root: Cid,
        dest: str | os.PathLike[str],
        providers: Sequence[str] = (),
        *,
        timeout: float = 300.0,
    ) -> FetchReport:
        """:meth:`fetch`, then write the tree to ``dest`` (which must not exist; see
        :func:`node.content.reader.read_tree`)."""
        report = await self.fetch(root, providers, timeout=timeout)

        async def local(cid: Cid) -> bytes:
            return await self.in_thread(self.store.get, cid)

        await aread_tree(root, local, dest)
        return report

    def statistics(self) -> ExchangeStatistics:
        c = self._counts
        return ExchangeStatistics(
            store=self.store.statistics(),
            fetches=c["fetches"],
            fetches_failed=c["fetches_failed"],
            blocks_fetched=c["blocks_fetched"],
            bytes_fetched=c["bytes_fetched"],
            blocks_served=c["blocks_served"],
            bytes_served=c["bytes_served"],
            unwanted=c["unwanted"],
            wants_truncated=c["wants_truncated"],
        )

    # -- what the client and the fetches tell each other -------------------------

    def count(self, what: str, n: int = 1) -> None:
        self._counts[what] += n

    def received(self, cid: Cid, data: bytes) -> None:
        """A peer sent ``cid``: store it if a fetch wants it, else drop it (note 3).

        The write runs in a task of its own, so the stream it came on is read on
        meanwhile (a flushed write takes ms); the fetch hears of it once stored.
        """
        if cid not in self._fetches or cid in self._storing or self._nursery is None:
            self._counts["unwanted"] += 1  # duplicates of a re-sent want included
            return
        self._storing.add(cid)
        self._nursery.start_soon(self._store, cid, data)

    async def _store(self, cid: Cid, data: bytes) -> None:
        try:
            await self.in_thread(self.store.put, cid, data)
        except Exception as exc:  # the disk refused it (full, read-only)
            log.warning("could not store block %s: %r", cid, exc)
            for fetch in self._waiting(cid):
                fetch.on_failed(cid, exc)
            return
        finally:
            self._storing.discard(cid)
        self._counts["blocks_fetched"] += 1
        self._counts["bytes_fetched"] += len(data)
        for fetch in self._waiting(cid):
            fetch.on_arrived(cid, len(data))

    def refused(self, cid: bytes, peer: ID) -> None:
        """``peer`` said it has not got ``cid`` (bitswap DONT_HAVE)."""
        try:
            ours = from_libp2p(cid)
        except ContentError:  # not a CID anything here wants
            return
        for fetch in self._waiting(ours):
            fetch.on_refused(ours, peer)

    def wants_truncated(self) -> None:
        self._counts["wants_truncated"] += 1

    def _waiting(self, cid: Cid) -> list[_Fetch]:
        """The fetches that want ``cid`` (a copy: telling them changes the set)."""
        return list(self._fetches.get(cid, ()))

    def stream_ended(self, peer: ID) -> None:
        for fetch in self._running:
            fetch.on_stream_ended(peer)

    def register(self, cid: Cid, fetch: _Fetch) -> None:
        self._fetches.setdefault(cid, set()).add(fetch)

    def unregister(self, cid: Cid, fetch: _Fetch) -> None:
        waiting = self._fetches.get(cid)
        if waiting is not None:
            waiting.discard(fetch)
            if not waiting:
                del self._fetches[cid]

    async def connect(self, peer: ID) -> bool:
        """Dial ``peer``'s direct host unless connected; whether it is connected now."""
        if self.host.get_network().get_connections(peer):
            return True
        try:
            addrs = self.host.get_peerstore().addrs(peer)
        except PeerStoreError:  # a peer it never heard of
            addrs = []
        if not addrs:
            log.info("no address known for provider %s", peer)
            return False
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                await self.host.connect(PeerInfo(peer, addrs))
            return True
        except (Exception, trio.TooSlowError) as exc:  # py-libp2p raises many kinds
            # A failed dial puts a peer on a 60 s negative cache: never leave it there.
            self.host.get_network().unblock_peer(peer)
            log.info("could not dial provider %s: %r", peer, exc)
            return False

    async def want(self, provider: ID, cids: list[Cid]) -> None:
        """Send WANT-BLOCK (with send-dont-have) for ``cids`` to ``provider``."""
        await self._client.want_from(provider, [to_libp2p(c) for c in cids])

    def forget(self, provider: ID, cids: Iterable[Cid], *, cancel: bool) -> None:
        """Drop the client's state for ``cids`` wanted from ``provider``; with ``cancel``
        tell the provider to drop them from its wantlist of this node."""
        self._client.forget(provider, [to_libp2p(c) for c in cids], cancel=cancel)


class _Fetch:
    """One :meth:`Exchange.fetch`: the DAG walk, the wants in flight, the deadline."""

    def __init__(self, exchange: Exchange, root: Cid, providers: list[ID], timeout: float) -> None:
        self.exchange = exchange
        self.root = root
        self.providers = providers
        self.timeout = timeout
        self.deadline = trio.current_time() + timeout
        self.to_scan: list[Cid] = [root]  # in the store (or maybe): check, read links
        self.queued: deque[Cid] = deque()  # missing, not yet wanted
        self.wanted: dict[Cid, ID] = {}  # wanted, from whom
        self.asked: dict[Cid, set[ID]] = {}  # providers asked (or that refused) per CID
        self.reachable: list[ID] | None = None
        self.blocks = 0
        self.bytes = 0
        self._progress = False  # a block arrived since the loop last looked
        self._lost: dict[ID, float] = {}  # provider -> when its answer stream ended
        self._failure: FetchError | None = None
        self._wake = trio.Event()

    async def run(self) -> FetchReport:
        started = trio.current_time()
        last_progress = started
        while True:
            while self.to_scan:
                batch, self.to_scan = self.to_scan[:SCAN_BATCH], self.to_scan[SCAN_BATCH:]
                links, missing = await self.exchange.in_thread(_scan, self.exchange.store, batch)
                self.to_scan.extend(links)
                await self._queue(missing)
            await self._send_wants()
            if self.to_scan:
                continue  # blocks came in while the wants went out: walk on
            if not (self.wanted or self.queued):
                return FetchReport(
                    self.root.text, self.blocks, self.bytes, trio.current_time() - started
                )
            now = trio.current_time()
            if now >= self.deadline:
                one = next(iter(self.wanted), None) or next(iter(self.queued), self.root)
                raise FetchTimeout(
                    f"{len(self.wanted) + len(self.queued)} blocks of {self.root} still missing"
                    f" after {self.timeout:g}s (one: {one})"
                )
            wake_at = min(self.deadline, now + STALL_S, *self._lost.values())
            with trio.move_on_at(wake_at):
                await self._wake.wait()
            self._wake = trio.Event()
            if self._failure is not None:
                raise self._failure
            if self._progress:
                self._progress = False
                last_progress = trio.current_time()
            elif trio.current_time() - last_progress >= STALL_S:
                log.info("no block of %s for %gs: wanting again", self.root, STALL_S)
                await self._rewant(set(self.wanted.values()))  # note 6
                last_progress = trio.current_time()
            now = trio.current_time()
            due = {peer for peer, when in self._lost.items() if when <= now}
            for peer in due:
                del self._lost[peer]
            await self._rewant(due)

    # The on_* calls come from other tasks while run() awaits; trio runs one task at
    # a time, and what run() computed before an await it checks again after it.

    def on_arrived(self, cid: Cid, size: int) -> None:
        provider = self.wanted.pop(cid, None)
        if provider is None:
            return  # a copy of one already in
        self.exchange.unregister(cid, self)
        self.exchange.forget(provider, [cid], cancel=True)
        self.asked.pop(cid, None)
        if cid.codec == DAG_PB:
            self.to_scan.append(cid)  # its links are wanted next
        self.blocks += 1
        self.bytes += size
        self._progress = True
        self._wake.set()

    def on_refused(self, cid: Cid, peer: ID) -> None:
        if self.wanted.get(cid) != peer:
            return
        del self.wanted[cid]
        self.exchange.unregister(cid, self)
        self.exchange.forget(peer, [cid], cancel=False)
        self.queued.appendleft(cid)  # to the next provider (or NotProvided)
        self._wake.set()

    def on_failed(self, cid: Cid, error: Exception) -> None:
        self._failure = FetchError(f"could not store block {cid} of {self.root}: {error}")
        self._wake.set()

    def on_stream_ended(self, peer: ID) -> None:
        # Not at once: a connection that just died is still listed for a moment, and
        # a want sent on it would be lost again. The delay also bounds how often a
        # peer that keeps closing its streams gets wants re-sent.
        if peer in self.wanted.values() and peer not in self._lost:
            self._lost[peer] = trio.current_time() + REWANT_DELAY_S
            self._wake.set()

    def close(self) -> None:
        """Forget every want still open (told to the providers asked)."""
        by_provider: dict[ID, list[Cid]] = {}
        for cid, provider in self.wanted.items():
            by_provider.setdefault(provider, []).append(cid)
            self.exchange.unregister(cid, self)
        for provider, cids in by_provider.items():
            self.exchange.forget(provider, cids, cancel=True)
        self.wanted.clear()

    # -- internals -------------------------------------------------------------

    async def _queue(self, missing: list[Cid]) -> None:
        if not missing:
            return
        if not self.providers:
            raise BlockNotFound(missing[0])
        if self.reachable is None:
            self.reachable = [p for p in self.providers if await self.exchange.connect(p)]
            if not self.reachable:
                names = ", ".join(str(p) for p in self.providers)
                raise ProvidersUnreachable(
                    f"cannot reach any provider of {self.root}: {names} (no address known"
                    " for it yet, or it did not answer)"
                )
        self.queued.extend(missing)

    def _provider_for(self, cid: Cid, load: Counter[ID]) -> ID:
        """The least loaded provider not yet asked for ``cid``; raises NotProvided when
        every one has been asked (and said it has not got it)."""
        asked = self.asked.setdefault(cid, set())
        candidates = [p for p in self.reachable or () if p not in asked]
        if not candidates:
            names = ", ".join(str(p) for p in self.reachable or ())
            raise NotProvided(f"no provider has block {cid} of {self.root} (asked {names})")
        return min(candidates, key=load.__getitem__)

    async def _send_wants(self) -> None:
        """Want queued blocks while some provider has fewer than ``window`` in flight."""
        window = self.exchange.window
        load = Counter(self.wanted.values())
        batches: dict[ID, list[Cid]] = {}
        kept: list[Cid] = []  # their providers are full; wanted on a later round
        while self.queued and any(load[p] < window for p in self.reachable or ()):
            cid = self.queued.popleft()
            provider = self._provider_for(cid, load)
            if load[provider] >= window:
                kept.append(cid)
                continue
            load[provider] += 1
            self.asked[cid].add(provider)
            self.wanted[cid] = provider
            self.exchange.register(cid, self)
            batches.setdefault(provider, []).append(cid)
        self.queued.extendleft(reversed(kept))
        for provider, cids in batches.items():
            await self.exchange.want(provider, cids)

    async def _rewant(self, providers: set[ID]) -> None:
        """Send the wants in flight to ``providers`` again (redialling them); those
        that cannot be dialled any more are dropped and their wants go elsewhere."""
        for provider in providers:
            cids = [cid for cid, asked in self.wanted.items() if asked == provider]
            if not cids:
                continue
            if await self.exchange.connect(provider):
                await self.exchange.want(provider, cids)
            else:
                self._drop(provider, cids)

    def _drop(self, provider: ID, cids: list[Cid]) -> None:
        """``provider`` cannot be reached any more: its wants go to the others."""
        log.info(
            "provider %s of %s is gone; %d blocks to ask elsewhere", provider, self.root, len(cids)
        )
        if self.reachable is not None and provider in self.reachable:
            self.reachable.remove(provider)
        for cid in cids:
            if self.wanted.get(cid) == provider:  # not arrived while it was dialled
                del self.wanted[cid]
                self.exchange.unregister(cid, self)
                self.queued.appendleft(cid)
        self.exchange.forget(provider, cids, cancel=False)
        if not self.reachable:
            raise ProvidersUnreachable(f"lost every provider of {self.root} ({provider} last)")


def _scan(store: BlockStore, cids: list[Cid]) -> tuple[list[Cid], list[Cid]]:
    """For blocks present, the CIDs they link to; and the CIDs not present.
    A dag-pb block is read (and verified) for its links; a raw leaf only checked."""
    links: list[Cid] = []
    missing: list[Cid] = []
    for cid in cids:
        if cid.digest == _EMPTY_DIGEST:
            store.put(cid, b"")  # note 8: no peer would send it
        if cid.codec != DAG_PB:
            if not store.has(cid):
                missing.append(cid)
            continue
        try:
            block = store.get(cid)
        except BlockNotFound:
            missing.append(cid)
            continue
        links.extend(link.cid for link in decode_node(block, cid).links)
    return links, missing
