"""Block exchange over py-libp2p's bitswap (node.p2p.exchange), with real libp2p
hosts on 127.0.0.1 in one trio loop: fetching a tree, serving what was fetched,
providers that have not got it, cannot be reached or never answer."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair

from node.content import Cid, add_path, import_path
from node.content.store import BlockNotFound, BlockStore
from node.p2p import compat
from node.p2p.exchange import (
    Exchange,
    FetchTimeout,
    NotProvided,
    ProvidersUnreachable,
    from_libp2p,
    parse_providers,
    to_libp2p,
)
from tests.conftest import wait_until_async
from tests.unit.test_unixfs import Tree, snapshot, write_tree

TREE: dict[str, Tree] = {
    "a.txt": b"hello\n",
    "empty": b"",
    "sub": {"big.bin": os.urandom(1_300_000), "deeper": {"x": b"x"}, "link": ("link", "../a")},
}
LISTEN = "/ip4/127.0.0.1/tcp/0"
# The peers patch py-libp2p as a node does; it is put back after each test.
pytestmark = pytest.mark.usefixtures("libp2p_patches_undone")


@dataclass
class Peer:
    host: object
    store: BlockStore
    exchange: Exchange | None

    @property
    def id(self) -> str:
        return self.host.get_id().to_base58()  # type: ignore[attr-defined]


@asynccontextmanager
async def peers(
    tmp_path: Path, n: int, *, bitswap: tuple[bool, ...] = ()
) -> AsyncIterator[list[Peer]]:
    """``n`` hosts, each with a store and (unless ``bitswap`` says no) a running
    exchange; every host knows every other's address."""
    listen = [multiaddr.Multiaddr(LISTEN)]
    compat.apply()  # as a node does: among others, it dials only whom it talks to
    hosts = [new_host(key_pair=create_new_key_pair(), listen_addrs=listen) for _ in range(n)]
    result: list[Peer] = []
    async with trio.open_nursery() as nursery:
        for i, host in enumerate(hosts):
            await nursery.start(_run_host, host)
            store = BlockStore(tmp_path / f"blocks{i}", sync=False)
            exchange = Exchange(host, store) if not bitswap or bitswap[i] else None
            if exchange is not None:
                await nursery.start(exchange.run)
            result.append(Peer(host, store, exchange))
        for a in hosts:
            for b in hosts:
                if a is not b:
                    a.get_peerstore().add_addrs(b.get_id(), b.get_addrs(), 3600)
        yield result
        nursery.cancel_scope.cancel()


async def _run_host(host: object, *, task_status: trio.TaskStatus[None]) -> None:
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LISTEN)]):  # type: ignore[attr-defined]
        task_status.started()
        await trio.sleep_forever()


def run(
    tmp_path: Path, n: int, test: Callable[[list[Peer]], Awaitable[None]], **kw: object
) -> None:
    async def main() -> None:
        async with peers(tmp_path, n, **kw) as group:  # type: ignore[arg-type]
            await test(group)

    trio.run(main)


def add(peer: Peer, tmp_path: Path, tree: Tree = TREE) -> Cid:
    write_tree(tmp_path / "in", tree)
    return import_path(tmp_path / "in", peer.store.put)


def exchange(peer: Peer) -> Exchange:
    assert peer.exchange is not None
    return peer.exchange


@pytest.mark.timeout(60)
def test_a_tree_is_fetched_byte_identical_and_then_served(tmp_path: Path) -> None:
    async def test(group: list[Peer]) -> None:
        a, b, c = group
        root = add(a, tmp_path)
        report = await exchange(b).fetch_tree(root, tmp_path / "out_b", [a.id], timeout=30)
        assert snapshot(tmp_path / "out_b") == TREE
        _, blocks = add_path(tmp_path / "in")
        assert report.blocks_fetched == len(blocks) - 1  # the empty leaf is never asked for
        assert report.bytes_fetched == sum(len(block) for block in blocks.values())
        assert set(b.store.cids()) == set(blocks)
        # c fetches from b only: what b fetched, it serves.
        await exchange(c).fetch_tree(root, tmp_path / "out_c", [b.id], timeout=30)
        assert snapshot(tmp_path / "out_c") == TREE
        served = exchange(b).statistics()
        assert served.blocks_served == report.blocks_fetched
        assert served.fetches == 1 and served.fetches_failed == 0
        assert exchange(a).statistics().unwanted == 0

    run(tmp_path, 3, test)


@pytest.mark.timeout(60)
def test_a_provider_without_the_block_is_skipped_at_once(tmp_path: Path) -> None:
    async def test(group: list[Peer]) -> None:
        has, lacks, fetcher = group
        root = add(has, tmp_path)
        # The root is wanted from ``lacks`` first (the least loaded, listed first). Only its
        # DONT_HAVE moves that want on: wants sent again go to the same provider, so
        # without it the fetch would end FetchTimeout.
        await exchange(fetcher).fetch(root, [lacks.id, has.id], timeout=30)
        assert set(fetcher.store.cids()) == set(has.store.cids())

    run(tmp_path, 3, test)


@pytest.mark.timeout(60)
def test_refusals_name_what_is_missing(tmp_path: Path) -> None:
    async def test(group: list[Peer]) -> None:
        has, lacks = group
        root = add(has, tmp_path)
        missing = Cid.of(0x55, b"nobody has this")
        # The only provider said DONT_HAVE: refused at once, not timed out.
        with pytest.raises(NotProvided, match=f"no provider has block {missing}"):
            await exchange(lacks).fetch(missing, [has.id])
        with pytest.raises(BlockNotFound, match=str(root)):
            await exchange(lacks).fetch(root)  # not here, and no provider named
        report = await exchange(has).fetch(root)  # complete here: nothing to fetch
        assert report.blocks_fetched == 0

    run(tmp_path, 2, test)


@pytest.mark.timeout(60)
def test_unreachable_and_silent_providers(tmp_path: Path) -> None:
    async def test(group: list[Peer]) -> None:
        fetcher, silent = group
        missing = Cid.of(0x55, b"nobody has this")
        stranger = parse_providers("12D3KooWGkTxiEkUzJ3WkWjkH6gS8PAxZ7qMtVLFHBFmrzXNPBHy")
        with pytest.raises(ProvidersUnreachable, match="cannot reach any provider"):
            await exchange(fetcher).fetch(missing, stranger, timeout=5)
        # A peer that speaks no bitswap: the want goes nowhere, the deadline ends it.
        started = trio.current_time()
        with pytest.raises(FetchTimeout, match=f"1 blocks of {missing} still missing"):
            await exchange(fetcher).fetch(missing, [silent.id], timeout=2)
        assert trio.current_time() - started >= 2  # not before its deadline
        statistics = exchange(fetcher).statistics()
        assert (statistics.fetches, statistics.fetches_failed) == (2, 2)

    run(tmp_path, 2, test, bitswap=(True, False))


@pytest.mark.timeout(30)
def test_blocks_nobody_wanted_are_dropped(tmp_path: Path) -> None:
    async def test(group: list[Peer]) -> None:
        (peer,) = group
        cid = Cid.of(0x55, b"unasked")
        await exchange(peer)._client.block_store.put_block(to_libp2p(cid), b"unasked")
        assert not peer.store.has(cid)
        assert exchange(peer).statistics().unwanted == 1
        assert from_libp2p(to_libp2p(cid)) == cid

    run(tmp_path, 1, test)


def test_parse_providers() -> None:
    peer = "12D3KooWGkTxiEkUzJ3WkWjkH6gS8PAxZ7qMtVLFHBFmrzXNPBHy"
    other = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    assert parse_providers(f" {peer},,{other},{peer}") == [peer, other]
    assert parse_providers(f"{peer},{other}", self_id=peer) == [other]
    assert parse_providers("") == []
    for bad in ("abc", "0OIl", "x" * 50):
        with pytest.raises(ValueError, match="is not a peer id"):
            parse_providers(f"{peer},{bad}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["connection dropped", "provider gone"])
def test_a_fetch_survives_losing_a_provider_midway(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "node.p2p.exchange")
    tree: Tree = {"big": os.urandom(12_000_000)}

    async def test(group: list[Peer]) -> None:
        first, second, fetcher = group
        root = add(first, tmp_path, tree)
        await exchange(second).fetch(root, [first.id], timeout=30)
        report = None

        async def fetch() -> None:
            nonlocal report
            report = await exchange(fetcher).fetch(root, [first.id, second.id], timeout=60)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            await wait_until_async(
                lambda: fetcher.store.statistics().blocks >= 4, 60, 0.005, "4 blocks fetched"
            )
            if how == "provider gone":
                await first.host.close()  # type: ignore[attr-defined]
            else:
                await first.host.get_network().close_peer(fetcher.host.get_id())  # type: ignore[attr-defined]
        assert report is not None
        assert set(fetcher.store.cids()) == set(second.store.cids())
        assert exchange(fetcher).statistics().fetches_failed == 0
        # Recovered when the stream ended, not by the last-resort stall check.
        assert not [r for r in caplog.records if "wanting again" in r.message]

    run(tmp_path, 3, test)
