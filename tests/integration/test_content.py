"""Content on a real 3-node devstack: `devstack add` prints the CID the reference
UnixFS importer prints, `devstack fetch` copies a tree byte for byte from one node to
another over bitswap (the fetching node then holds and serves its blocks), bad input
is refused with the right status, and 50 MB move between two nodes (figure printed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.content import RAW, Cid, add_path
from tests.conftest import Devstack, docker_client, get_json, running_devstack
from tests.unit.test_tarball import tar_of
from tests.unit.test_unixfs import Tree, oracle, snapshot, write_tree

pytestmark = pytest.mark.slow

TREE: dict[str, Tree] = {
    "README": b"results of a job\n",
    "empty": b"",
    "outputs": {
        "big.bin": os.urandom(1_500_000),  # six 256 KiB chunks: a file DAG, not one leaf
        "nested": {"deeper": {"x.json": b'{"x": 1}\n'}, "blank": {}},
        "latest": ("link", "big.bin"),
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """A 3-node devstack of this module's own (real processes, libp2p)."""
    docker_client().close()  # teardown checks that no container is left
    with running_devstack(tmp_path_factory.mktemp("content3"), 3) as stack:
        yield stack


def peer(cluster: Devstack, index: int) -> str:
    assert cluster.state is not None
    return cluster.state.nodes[index].peer_id


def fetch(cluster: Devstack, cid: str, dest: Path, *args: str) -> None:
    """``devstack fetch CID -o DEST ARGS...``, which must succeed and print DEST."""
    result = cluster.run("fetch", cid, "-o", str(dest), *args, check=True)
    assert result.stdout == f"{dest}\n"


def content(cluster: Devstack, index: int) -> dict[str, int]:
    return get_json(f"{cluster.api(index)}/api/v1/node")["content"]


@pytest.mark.timeout(300)
def test_add_prints_kubos_cid_and_fetch_copies_the_tree_over_bitswap(
    cluster: Devstack, tmp_path: Path
) -> None:
    write_tree(tmp_path / "tree", TREE)
    added = cluster.run("add", str(tmp_path / "tree"), check=True)
    cid = added.stdout.strip()
    assert added.stdout == f"{cid}\n", "devstack add prints the CID alone"
    assert [cid] == oracle(tmp_path / "tree")
    _, blocks = add_path(tmp_path / "tree")

    before = content(cluster, 2)
    fetch(cluster, cid, tmp_path / "copy", "--node", "2", "--from", "0")
    assert snapshot(tmp_path / "copy") == TREE  # every name, kind, link target and byte
    after = content(cluster, 2)
    assert after["store"]["blocks"] - before["store"]["blocks"] == len(blocks)
    assert after["store"]["bytes"] - before["store"]["bytes"] == sum(map(len, blocks.values()))
    # The empty file's leaf is known from its CID; every other block came over bitswap.
    assert after["blocks_fetched"] - before["blocks_fetched"] == len(blocks) - 1
    assert content(cluster, 0)["blocks_served"] >= len(blocks) - 1

    # Node 2 now serves the tree itself: node 1 fetches it from node 2 alone.
    fetch(cluster, cid, tmp_path / "again", "--node", "1", "--from", "2")
    assert snapshot(tmp_path / "again") == TREE
    # And a node that holds it answers without any provider.
    fetch(cluster, cid, tmp_path / "local", "--node", "2")
    assert snapshot(tmp_path / "local") == TREE


@pytest.mark.timeout(120)
def test_bad_input_is_refused_with_a_clear_status(cluster: Devstack, tmp_path: Path) -> None:
    api = cluster.api(0)
    escaping = httpx.post(f"{api}/api/v1/content", content=tar_of(("../x", "file", "x")))
    assert escaping.status_code == 400, escaping.text
    assert escaping.json()["error"] == "bad_archive"
    assert "'../x'" in escaping.json()["message"]

    malformed = httpx.get(f"{api}/api/v1/content/bafy-not-a-cid")
    assert malformed.status_code == 400, malformed.text
    assert (malformed.json()["error"], malformed.json()["field"]) == ("bad_cid", "cid")

    unknown = Cid.of(RAW, os.urandom(32)).text
    missing = httpx.get(f"{api}/api/v1/content/{unknown}")
    assert missing.status_code == 404, missing.text
    assert unknown in missing.json()["message"] and "?from=" in missing.json()["message"]

    # The CLI says so on stderr, exits 1 and writes nothing.
    result = cluster.run("fetch", unknown, "-o", str(tmp_path / "nothing"))
    assert (result.returncode, result.stdout) == (1, "")
    assert "404" in result.stderr and unknown in result.stderr
    assert not (tmp_path / "nothing").exists()
    result = cluster.run("add", str(tmp_path / "no-such-path"))
    assert (result.returncode, result.stdout) == (1, "")
    assert "no-such-path" in result.stderr


@pytest.mark.timeout(600)
def test_bitswap_throughput_of_50_mb_between_two_nodes(
    cluster: Devstack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 50_000_000
    (tmp_path / "big.bin").write_bytes(os.urandom(size))
    started = time.monotonic()
    cid = cluster.run("add", str(tmp_path / "big.bin"), check=True).stdout.strip()
    add_s = time.monotonic() - started

    started = time.monotonic()
    params = {"from": peer(cluster, 0)}
    url = f"{cluster.api(1)}/api/v1/content/{cid}"
    with httpx.stream("GET", url, params=params, timeout=httpx.Timeout(330.0)) as response:
        assert response.status_code == 200, response.read()
        fetched = int(response.headers["x-fetched-bytes"])
        fetch_s = float(response.headers["x-fetch-seconds"])
        streamed = sum(len(piece) for piece in response.iter_bytes())
    total_s = time.monotonic() - started
    assert fetched > size  # every block came over bitswap (leaves and the nodes above them)
    assert streamed > size
    with capsys.disabled():
        print(
            f"\n50 MB: devstack add {add_s:.2f}s ({size / add_s / 1e6:.1f} MB/s);"
            f" bitswap node 0 -> node 1 {fetch_s:.2f}s ({fetched / fetch_s / 1e6:.1f} MB/s);"
            f" fetch and tar download {total_s:.2f}s ({size / total_s / 1e6:.1f} MB/s)"
        )
