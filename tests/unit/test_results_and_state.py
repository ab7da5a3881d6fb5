"""Result archives are canonical; devstack state and peer choice behave as documented."""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack import state as ds
from devstack.cluster import choose_peers, free_ports
from node.results import ResultNotFound, ResultStore, pack, result_id_of

pytestmark = pytest.mark.timeout(60)


def _tree(root: Path, stdout: bytes) -> Path:
    (root / "outputs").mkdir(parents=True)
    (root / "stdout").write_bytes(stdout)
    (root / "stderr").write_bytes(b"")
    (root / "exitCode").write_text("0\n")
    (root / "outputs" / "a.txt").write_text("a")
    return root


def test_same_tree_same_id_whatever_the_times_and_modes(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", b"hello\n")
    b = _tree(tmp_path / "b", b"hello\n")
    os.utime(b / "stdout", (1, 1))
    (b / "outputs" / "a.txt").chmod(0o600)
    assert result_id_of(a) == result_id_of(b)
    assert pack(a) == pack(b)
    c = _tree(tmp_path / "c", b"hellO\n")
    assert result_id_of(a) != result_id_of(c)
    assert result_id_of(a).startswith("bafybei")  # a directory's CIDv1 (dag-pb)


def test_archive_unpacks_to_the_tree(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(pack(_tree(tmp_path / "t", b"x")))) as tar:
        names = sorted(tar.getnames())
        assert names == ["exitCode", "outputs", "outputs/a.txt", "stderr", "stdout"]
        assert tar.extractfile("stdout").read() == b"x"  # type: ignore[union-attr]


def test_store_serves_by_id_and_refuses_bad_ids(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    rid = store.put(_tree(tmp_path / "t", b"x"))
    assert store.path(rid).read_bytes() == pack(tmp_path / "t")
    assert store.statistics().stored == 1
    for bad in ("0" * 63, "../../etc/passwd", rid.upper(), "f" * 64, rid[:-1]):
        with pytest.raises(ResultNotFound):
            store.path(bad)


@given(n=st.integers(1, 200), seed=st.integers(0, 1000))
def test_peers_are_bootstrap_plus_random_others_never_a_star(n: int, seed: int) -> None:
    addrs = [f"/ip4/127.0.0.1/tcp/{1000 + i}/p2p/P{i}" for i in range(n)]
    rng = random.Random(seed)
    for i in range(n):
        peers = choose_peers(i, addrs, rng)
        if i == 0:
            assert peers == []
            continue
        assert peers[0] == addrs[0]
        assert addrs[i] not in peers
        assert len(set(peers)) == len(peers) == 1 + min(4, n - 2)


def test_free_ports_are_distinct() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20


def _entry(i: int, pid: int, started: float) -> ds.NodeEntry:
    return ds.NodeEntry(
        index=i,
        pid=pid,
        started=started,
        peer_id=f"12D3KooWpeer{i}abc",
        multiaddr="",
        api="",
        swarm_port=0,
        api_port=0,
        data_dir="",
        log_file="",
    )


def test_state_round_trip_liveness_and_lookup(tmp_path: Path) -> None:
    me = os.getpid()
    started = ds.process_started(me)
    assert started is not None
    cluster = ds.ClusterState(
        launcher_pid=me,
        launcher_started=started,
        created_at=time.time(),
        nodes=[_entry(0, me, started), _entry(1, me, started - 100)],
        hosts=2,
        forwarders=[ds.ForwarderEntry(host=0, pid=me, started=started)],
    )
    ds.save(tmp_path, cluster)
    loaded = ds.load(tmp_path)
    assert loaded == cluster
    # Same pid but another start time is a recycled pid, not our node.
    assert [n.index for n in ds.live_nodes(loaded)] == [0]
    assert ds.find_node(loaded, "1").index == 1
    assert ds.find_node(loaded, "node-0").index == 0
    assert ds.find_node(loaded, "peer1").index == 1
    with pytest.raises(ds.StateError, match="no node 7"):
        ds.find_node(loaded, "7")
    with pytest.raises(ds.StateError, match="matches 2 nodes"):
        ds.find_node(loaded, "12D3KooWpeer")


def test_a_state_file_without_forwarders_has_none_and_a_bad_one_is_named(tmp_path: Path) -> None:
    document = {"launcher_pid": 1, "launcher_started": 0.0, "created_at": 0.0, "nodes": []}
    ds.state_path(tmp_path).write_text(json.dumps(document))
    loaded = ds.load(tmp_path)
    assert loaded is not None and loaded.forwarders == []
    document["forwarders"] = [{"host": 0, "pid": "x", "started": 0.0}]
    ds.state_path(tmp_path).write_text(json.dumps(document))
    with pytest.raises(ds.StateError, match=r"\$.forwarders\[0\].pid"):
        ds.load(tmp_path)


def test_unreadable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    ds.state_path(tmp_path).write_text("{not json")
    with pytest.raises(ds.StateError, match="not a devstack state file"):
        ds.load(tmp_path)
    ds.remove(tmp_path)
    assert ds.load(tmp_path) is None
