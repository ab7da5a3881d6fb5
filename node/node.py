"""The node: wires identity, store, transport, roles and API, and routes messages.

A node is one process on one trio loop. Every message that reaches it is checked
here (schema by the transport, the entitlement table by :func:`check_sender`)
before a role sees it; a refused one is dropped and counted.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import trio

from node import messages
from node.api import serve_api
from node.badactor import Forgery
from node.bandstep import BandStep
from node.bidder import DEFAULT_BIDDER, DEFAULT_STEP_S, make_bidder
from node.capacity import Capacity
from node.compute import Compute
from node.content.store import BlockStore
from node.context import NodeContext
from node.credibility import Credibility
from node.entitlement import check_sender
from node.executors.base import Executor
from node.executors.docker import DockerExecutor
from node.executors.noop import NoopExecutor
from node.jobinputs import count_shards
from node.messages import Ack, Message
from node.metrics import (
    NodeStatistics,
    PhaseLatencies,
    ResourceSampler,
    document,
    node_registry,
)
from node.models import Job, JobSpec, SpecError, validate_spec
from node.p2p import compat
from node.p2p.exchange import Exchange
from node.p2p.identity import load_or_create_key, peer_id_of
from node.p2p.membership import MEMBERS_PROTOCOL, Membership, decode_exchange, encode_exchange
from node.p2p.transport import Transport, TransportError
from node.publishers import make_publishers
from node.requester import (
    BID_WINDOW_S,
    DEFAULT_DISPATCH,
    MAX_BID_ROUNDS,
    Dispatch,
    Requester,
)
from node.results import ResultStore
from node.sealing import Unsealer
from node.store import Store
from node.storequeue import StoreQueue
from profiles.locks import DEFAULT_WARN_MS, REGISTRY, ThreadLock
from profiles.report import contention_report
from profiles.stalls import DEFAULT_THRESHOLD_MS, StallDetector

log = logging.getLogger(__name__)

#: How often a node dials again the peers it was told to join and is not connected to.
KEEP_PEERS_S = 5.0
#: A membership exchange's wait for a reply (per attempt), and how long a neighbour
#: that gave none is left out of the exchanges.
MEMBERS_TIMEOUT_S = 2.0
MEMBERS_BACKOFF_S = 30.0

_TO_REQUESTER = (
    messages.Bid,
    messages.OfferDeclined,
    messages.ResultsProposed,
    messages.ResultsPublished,
    messages.ComputeError,
    messages.ExecutionHeartbeat,
    messages.JobOutput,
    messages.ExecutionLost,
    messages.SlotFreed,
)

try:
    VERSION = version("py-bacalhau")
except PackageNotFoundError:  # running from a source tree
    VERSION = "0+unknown"


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    swarm_port: int
    api_port: int
    direct_port: int = 0  # job messages' libp2p host; 0: any free port
    peers: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    bidder: str = DEFAULT_BIDDER
    dispatch: Dispatch = DEFAULT_DISPATCH
    offer_first: tuple[str, ...] = ()  # test hook: offered first runs before any other node
    bid_step: float = DEFAULT_STEP_S
    slots: int | None = None  # default: a slot per core
    cpu: float | None = None  # cores offered; default: all
    memory: int | None = None  # bytes offered; default: all
    members_period: float = 5.0
    bid_window: float = BID_WINDOW_S
    bid_rounds: int = MAX_BID_ROUNDS
    forgery: Forgery | None = None  # a bad actor's forging (to show the verifier at work)
    lock_warn_ms: float = DEFAULT_WARN_MS  # a lock waited for or held longer logs a warning
    stall_ms: float = DEFAULT_THRESHOLD_MS  # a task step longer than this is a stall
    log_file: Path | None = None  # where the node logs (None: stderr); GET /api/v1/logs reads it
    # libp2p's bind address (None: ``host``) and the one peers are told (None: as bound).
    listen_host: str | None = None
    announce_host: str | None = None
    # A network namespace to run in (a devstack host: node/namespace.py).
    netns: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"


def make_executors(docker: DockerExecutor) -> dict[str, Executor]:
    """One executor of each kind, by name: ``docker`` (the node's own, which it also
    asks for its images) and ``noop``. A spec names one of :data:`node.models.ENGINES`;
    ``tests/unit/test_registries.py`` keeps the two equal."""
    return {executor.name: executor for executor in (docker, NoopExecutor())}


class Node:
    """One py-bacalhau node. :meth:`run` serves until cancelled."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self._key = load_or_create_key(config.data_dir)
        self.node_id = peer_id_of(self._key)
        # One node per process: the lock registry and the loop are the process's.
        REGISTRY.warn_ms = config.lock_warn_ms
        compat.apply(REGISTRY)
        self.stalls = StallDetector(config.stall_ms)
        self.phases = PhaseLatencies()
        self.sampler = ResourceSampler()
        self.metrics_registry = node_registry(
            self.statistics, REGISTRY.statistics, self.stalls.statistics
        )
        self.store = Store(
            config.data_dir / "jobs.sqlite", lock_factory=lambda: ThreadLock("store.sqlite")
        )
        self.results = ResultStore(config.data_dir / "results")
        self.blocks = BlockStore(config.data_dir / "blocks")  # content, served over bitswap
        self.store_queue = StoreQueue()
        self.membership = Membership(self.node_id, config.api_url, period=config.members_period)
        self.transport = Transport(
            self._key,
            listen_port=config.swarm_port,
            direct_port=config.direct_port,
            host=config.listen_host or config.host,
            announce=config.announce_host,
            gossip_check=self._gossip_check,
            on_gossip=self._on_gossip,
            on_direct=self._on_direct,
            extra_protocols={MEMBERS_PROTOCOL: self._on_members},
        )
        self._bidder = make_bidder(config.bidder, step=config.bid_step)
        self.ready = trio.Event()
        self._direct_addrs: dict[str, str] = {}  # what the transport was taught
        self.requester: Requester
        self.compute: Compute
        self.exchange: Exchange
        self.docker: DockerExecutor

    # -- lifecycle -------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        docker = self.docker = DockerExecutor()
        executors = make_executors(docker)
        publishers = make_publishers(
            self.results, self.blocks, api_url=config.api_url, scratch=config.data_dir / "scratch"
        )
        # Runs of a previous life of this node: nothing can use their trees now.
        shutil.rmtree(config.data_dir / "work", ignore_errors=True)
        trio.lowlevel.add_instrument(self.stalls)
        try:
            async with trio.open_nursery() as nursery:
                # Roles exist before the transport runs: messages may arrive at once.
                self.ctx = NodeContext(
                    node_id=self.node_id,
                    api_url=config.api_url,
                    store=self.store,
                    transport=self.transport,
                    membership=self.membership,
                    nursery=nursery,
                    store_queue=self.store_queue,
                    metrics=self.phases,
                )
                nursery.start_soon(self.store_queue.run)
                nursery.start_soon(self.sampler.run, docker.container_pids)
                self.requester = Requester(
                    self.ctx,
                    Unsealer(self._key),
                    bid_window=config.bid_window,
                    max_rounds=config.bid_rounds,
                    dispatch=config.dispatch,
                    offer_first=config.offer_first,
                    # What an earlier life of this node learnt of the others.
                    credibility=Credibility(await self.ctx.db(self.store.credibility)),
                )
                self.compute = Compute(
                    self.ctx,
                    executors=executors,
                    publishers=publishers,
                    bidder=self._bidder,
                    band_step=BandStep(config.bid_step),
                    capacity=Capacity(config.slots, cpu=config.cpu, memory=config.memory),
                    results=self.results,
                    work_dir=config.data_dir / "work",
                    forgery=config.forgery,
                )
                resumed = await self.requester.resume()
                async with self.transport.running():
                    self.membership.direct = self.transport.direct_addrs[0]
                    self.exchange = Exchange(self.transport.direct_host, self.blocks)
                    await nursery.start(self.exchange.run)
                    self.compute.exchange = self.exchange
                    nursery.start_soon(self.compute.resume)
                    self.requester.drive_resumed(resumed)
                    await nursery.start(serve_api, self, config.host, config.api_port)
                    for peer in config.peers:
                        nursery.start_soon(self.transport.connect, peer)
                    nursery.start_soon(self._exchange_members)
                    nursery.start_soon(self._keep_peers)
                    self._write_node_file()
                    self.ready.set()
                    log.info("node %s ready: api %s", self.node_id, config.api_url)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for executor in executors.values():
                    await executor.aclose()
                self.store.close()
            trio.lowlevel.remove_instrument(self.stalls)

    def _write_node_file(self) -> None:
        info = {
            "id": self.node_id,
            "pid": os.getpid(),
            "api": self.config.api_url,
            "addrs": self.transport.addrs,
        }
        tmp = self.config.data_dir / "node.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(self.config.data_dir / "node.json")

    async def _exchange_members(self) -> None:
        """Each round, swap membership tables with one random neighbour: one that
        answered lately where there is one. A neighbour that did not answer is left
        alone for :data:`MEMBERS_BACKOFF_S`: behind a partition a connection can look
        alive for minutes, and rounds spent waiting on it let the live nodes'
        heartbeats expire (README, Several hosts)."""
        silent: dict[str, float] = {}  # neighbour -> trio clock until which it is skipped
        while True:
            neighbours = self.transport.neighbours()
            if neighbours:
                self.membership.tick()
                now = trio.current_time()
                answering = [p for p in neighbours if silent.get(p, 0.0) <= now]
                peer = random.choice(answering or neighbours)
                try:
                    reply = await self.transport.request(
                        peer,
                        MEMBERS_PROTOCOL,
                        encode_exchange(self.membership.table()),
                        timeout=MEMBERS_TIMEOUT_S,
                    )
                    self.membership.merge(decode_exchange(reply))
                    self._remember_direct_addrs()
                    silent.pop(peer, None)
                except TransportError as exc:
                    silent[peer] = trio.current_time() + MEMBERS_BACKOFF_S
                    log.debug("membership exchange with %s failed: %s", peer, exc)
                except ValueError as exc:
                    self.transport.count_dropped("members_malformed")
                    log.info("bad membership table from %s: %s", peer, exc)
                await trio.sleep(self.membership.next_delay())
            else:
                await trio.sleep(0.1)

    async def _keep_peers(self) -> None:
        """Dial again, every :data:`KEEP_PEERS_S`, each peer this node was told to join
        that it is not connected to: after a partition heals (README, Several hosts),
        or a peer's restart, the two sides find each other again this way."""
        while True:
            await trio.sleep(KEEP_PEERS_S)
            connected = set(self.transport.neighbours())
            for peer in self.config.peers:
                if peer.rsplit("/p2p/", 1)[-1] not in connected:
                    self.ctx.spawn(partial(self.transport.connect, peer, attempts=1))

    def _remember_direct_addrs(self) -> None:
        """Teach the transport the direct addresses membership learned or changed."""
        for peer, addr in self.membership.direct_addrs().items():
            if self._direct_addrs.get(peer) != addr:
                self._direct_addrs[peer] = addr
                self.transport.remember_addrs(peer, [addr])

    async def _on_members(self, sender: str, request: bytes) -> bytes:
        try:
            self.membership.merge(decode_exchange(request))
            self._remember_direct_addrs()
        except ValueError:
            self.transport.count_dropped("members_malformed")
            raise
        return encode_exchange(self.membership.table())

    # -- what the API asks ----------------------------------------------------

    async def submit(self, spec: JobSpec) -> Job:
        """Validate ``spec`` against the live network and start the job.

        Raises :class:`SpecError` naming the field that is wrong.
        """
        validate_spec(spec, network_size=self.membership.size)
        shards = await count_shards(spec, self.exchange, self._providers_of)
        return await self.requester.submit(spec, shards)

    async def _providers_of(self, cid: str) -> list[str]:
        """Who to fetch ``cid`` from: the nodes that published it in this node's jobs."""
        providers = await self.ctx.db(self.store.providers, cid)
        return [p for p in providers if p != self.node_id]

    def info(self) -> dict[str, Any]:
        t = self.transport.statistics()
        return {
            "id": self.node_id,
            "version": VERSION,
            "api": self.config.api_url,
            "addrs": self.transport.addrs,
            "direct_addrs": self.transport.direct_addrs,
            "bidder": self._bidder.name,
            "dispatch": self.requester.dispatch,
            "bad_actor": self.config.forgery is not None,
            "forgery": None if self.config.forgery is None else self.config.forgery.describe(),
            "credibility": self.requester.credibility.describe(time.time()),
            "network_size": self.membership.size,
            "peers": {"connected": t.connected_peers, "topic": t.topic_peers, "mesh": t.mesh_peers},
            "known_nodes": self.membership.live_peers(),
            "transport": _record(t),
            "membership": _record(self.membership.statistics()),
            "capacity": _record(self.compute.capacity.statistics()),
            "store": _record(self.store.statistics()),
            "store_queue": _record(self.store_queue.statistics()),
            "requester": _record(self.requester.statistics()),
            "compute": _record(self.compute.statistics()),
            "band_step": _record(self.compute.band_step.statistics()),
            "content": _record(self.exchange.statistics()),
            "tasks": _record(self.ctx.statistics()),
        }

    def statistics(self) -> NodeStatistics:
        """Every figure of this node but its locks and stalls (:meth:`contention`)."""
        return NodeStatistics(
            node=self.node_id,
            at=time.time(),
            resources=self.sampler.statistics(),
            transport=self.transport.statistics(),
            requester=self.requester.statistics(),
            compute=self.compute.statistics(),
            latency=self.phases.statistics(),
            output=self.requester.outputs.statistics(),
        )

    def stats(self) -> dict[str, Any]:
        """``GET /api/v1/stats``: :meth:`statistics` as JSON, and :meth:`contention`'s
        keys as it gives them (``devstack locks`` reads them)."""
        return {**document(self.statistics()), **self.contention()}

    def contention(self) -> dict[str, Any]:
        """Every instrumented lock of this process and the loop's stalls, as plain data."""
        return contention_report(REGISTRY, self.stalls)

    def health(self) -> dict[str, Any]:
        gossip_peers = self.transport.topic_peers()
        return {
            "ok": True,
            "ready": self.ready.is_set() and gossip_peers > 0,
            "gossip_peers": gossip_peers,
            "network_size": self.membership.size,
            # Jobs requested here and not ended: what a load generator waits on.
            "open_jobs": self.requester.statistics().open_jobs,
        }

    # -- message routing -------------------------------------------------------

    def _known_requester(self, job_id: str) -> str | None:
        if self.requester.owns(job_id):
            return self.node_id
        return self.compute.requester_of(job_id)

    def _gossip_check(self, sender: str, message: Message) -> str | None:
        if isinstance(message, messages.JobAnnounced) and not _valid_spec(message.job.spec):
            return "invalid_spec"
        # A close can come before its announce (gossip paths differ): unknown here, its
        # signer must be the requester it names (``check_sender``).
        requester = self._known_requester(message.job_id)
        return check_sender(message, sender, requester=requester)

    async def _on_gossip(self, sender: str, message: Message) -> None:
        match message:
            case messages.JobAnnounced():
                await self.compute.on_announced(message)
            case messages.BiddingClosed():
                self.compute.on_bidding_closed(message)

    async def _on_direct(self, sender: str, message: Message) -> Ack:
        job_id, shard = message.job_id, getattr(message, "shard", 0)
        to_requester = isinstance(message, _TO_REQUESTER)
        bidders: frozenset[str] | None = None
        if to_requester:
            requester = self.node_id if self.requester.owns(job_id) else None
            accepted = self.requester.accepted(job_id, shard)
            bidders = self.requester.bidders(job_id, shard)
        else:
            requester, accepted = self.compute.requester_of(job_id), frozenset()
        if isinstance(message, messages.JobOffered) and not _valid_spec(message.job.spec):
            reason: str | None = "invalid_spec"
        else:
            reason = check_sender(
                message,
                sender,
                requester=requester,
                accepted=accepted,
                bidders=bidders,
                full=self.requester.full_nodes(),
            )
        if reason is not None:
            self.transport.count_dropped(f"direct_{reason}")
            log.info(
                "dropped %s for %s from %s: %s", type(message).__name__, job_id, sender, reason
            )
            return Ack(False, reason)
        if to_requester:
            return await self.requester.on_message(sender, message)
        if isinstance(message, messages.JobOffered):
            return await self.compute.on_offered(message)
        return await self.compute.on_message(sender, message)


def _valid_spec(spec: JobSpec) -> bool:
    try:
        validate_spec(spec)
    except SpecError:
        return False
    return True


def _record(stats: Any) -> dict[str, Any]:
    """A statistics() record as plain JSON-able data."""
    return {
        f.name: dict(v) if isinstance(v := getattr(stats, f.name), Mapping) else v
        for f in fields(stats)
    }
