"""A memory profile of a node that allocates on purpose names that allocation site first.

A real :class:`node.node.Node` (store, libp2p host, HTTP API; no peers, no Docker
needed) runs in this process, so a task here can allocate inside the node's process
while ``POST /api/v1/debug/memory`` profiles it over real HTTP.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import httpx
import pytest
import trio

from devstack.cluster import free_ports
from node.node import Node, NodeConfig
from profiles.memory import short_path
from tests.conftest import wait_until_async

KIB = 1024


def hoard_in_the_node_on_purpose(kept: list[bytes]) -> None:
    kept += [bytes(KIB) for _ in range(500)]  # the allocation site: the first body line


ALLOCATION_SITE = (
    f"{short_path(__file__)}:{hoard_in_the_node_on_purpose.__code__.co_firstlineno + 1}"
)


async def _hoarder(kept: list[bytes]) -> None:
    # ~5 MB/s: far above what an idle node allocates, small enough for CI.
    while True:
        hoard_in_the_node_on_purpose(kept)
        await trio.sleep(0.1)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("libp2p_patches_undone")  # the node patches py-libp2p in this process
def test_memory_profile_of_a_node_names_the_allocation_site_first(tmp_path: Path) -> None:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already on (PYTHONTRACEMALLOC?)")
    swarm_port, api_port = free_ports(2)
    node = Node(NodeConfig(data_dir=tmp_path / "node", swarm_port=swarm_port, api_port=api_port))
    api = node.config.api_url
    kept: list[bytes] = []
    answers: dict[str, httpx.Response] = {}

    async def ask(http: httpx.AsyncClient, name: str, seconds: int) -> None:
        answers[name] = await http.post(f"{api}/api/v1/debug/memory", params={"seconds": seconds})

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            nursery.start_soon(_hoarder, kept)
            async with httpx.AsyncClient(timeout=60) as http, trio.open_nursery() as requests:
                requests.start_soon(ask, http, "first", 2)
                await wait_until_async(tracemalloc.is_tracing, 30, 0.01, "the first session")
                await ask(http, "second", 1)
                await ask(http, "zero", 0)
            nursery.cancel_scope.cancel()

    trio.run(main)

    first = answers["first"]
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["node"] == node.node_id and body["seconds"] == 2
    grown = body["top_by_growth"][0]
    assert grown["site"] == ALLOCATION_SITE, body["text"]
    assert grown["function"] == "hoard_in_the_node_on_purpose"
    # At least one step of the hoarder (one every 0.1 s) fell within the 2 s session.
    assert grown["size_diff_bytes"] >= 500 * KIB, grown
    assert body["top_by_size"][0]["site"] == ALLOCATION_SITE, body["text"]
    assert body["peak_bytes"] >= body["current_bytes"] > 0
    assert f"{ALLOCATION_SITE} in hoard_in_the_node_on_purpose" in body["text"]

    second = answers["second"]
    assert second.status_code == 409 and second.json()["error"] == "busy", second.text
    zero = answers["zero"]
    assert zero.status_code == 400 and zero.json()["field"] == "seconds", zero.text

    # The session stopped the tracing it started, and the node shut down: its port is free.
    assert not tracemalloc.is_tracing()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{api}/api/v1/healthz", timeout=5)
