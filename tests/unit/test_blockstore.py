"""The on-disk block store (node.content.store): layout, verification on the way in
and out, corruption handling, counters, reopening, and many threads at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.content import DAG_PB, RAW, Cid, ContentError
from node.content.store import BlockNotFound, BlockStore, BlockStoreStatistics

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
blocks = st.binary(max_size=4096)
codecs = st.sampled_from([RAW, DAG_PB])


def stats(store: BlockStore) -> dict[str, int]:
    s = store.statistics()
    return {k: getattr(s, k) for k in BlockStoreStatistics.__slots__}


@pytest.fixture
def store(tmp_path: Path) -> BlockStore:
    return BlockStore(tmp_path / "blocks", sync=False)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=blocks, codec=codecs)
def test_put_then_get_returns_the_block(store: BlockStore, data: bytes, codec: int) -> None:
    cid = Cid.of(codec, data)
    store.put(cid, data)
    assert store.has(cid)
    assert store.get(cid) == data


def test_files_are_named_by_cid_text_in_next_to_last_shards(store: BlockStore) -> None:
    cid = Cid.of(RAW, b"")
    store.put(cid, b"")
    assert cid.text == EMPTY_RAW
    assert store.path(cid) == store.root / "yk" / EMPTY_RAW
    assert store.path(cid).is_file()
    assert [p.name for p in store.root.iterdir()] == ["yk"]


def test_put_refuses_data_that_is_not_the_cid(store: BlockStore) -> None:
    cid = Cid.of(RAW, b"right")
    with pytest.raises(ContentError, match=cid.text):
        store.put(cid, b"wrong")
    assert not store.has(cid)
    assert list(store.root.rglob("*")) == []  # no temporary file left either


def test_put_twice_is_a_no_op(store: BlockStore) -> None:
    cid = Cid.of(RAW, b"twice")
    store.put(cid, b"twice")
    store.put(cid, b"twice")
    assert stats(store)["blocks"] == 1
    assert stats(store)["puts"] == 1
    assert stats(store)["bytes"] == 5


def test_get_of_a_missing_block_names_it(store: BlockStore) -> None:
    cid = Cid.of(RAW, b"absent")
    with pytest.raises(BlockNotFound, match=cid.text) as caught:
        store.get(cid)
    assert caught.value.cid == cid
    assert isinstance(caught.value, LookupError)
    assert stats(store)["misses"] == 1


@pytest.mark.parametrize("damage", [b"Original content", b"", b"x" * 10_000])
def test_a_damaged_file_is_deleted_and_reported_missing(
    store: BlockStore, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cid = Cid.of(RAW, b"original content")
    store.put(cid, b"original content")
    store.path(cid).write_bytes(damage)
    with pytest.raises(BlockNotFound, match=cid.text):
        store.get(cid)
    assert not store.has(cid)
    assert any("damaged" in r.message for r in caplog.records)
    counts = stats(store)
    assert (counts["blocks"], counts["corrupt"], counts["misses"]) == (0, 1, 1)
    if len(damage) == len(b"original content"):  # a changed size makes the byte count drift
        assert counts["bytes"] == 0
    store.put(cid, b"original content")  # it can be stored again
    assert store.get(cid) == b"original content"


def test_statistics_count_every_call(store: BlockStore) -> None:
    a, b = Cid.of(RAW, b"a"), Cid.of(DAG_PB, b"bb")
    store.put(a, b"a")
    store.put(b, b"bb")
    store.get(a)
    store.get(a)
    with pytest.raises(BlockNotFound):
        store.get(Cid.of(RAW, b"c"))
    assert stats(store) == {
        "blocks": 2,
        "bytes": 3,
        "puts": 2,
        "gets": 3,
        "misses": 1,
        "corrupt": 0,
    }


def test_delete_and_cids(store: BlockStore) -> None:
    held = {Cid.of(RAW, bytes([i])): bytes([i]) for i in range(20)}
    for cid, data in held.items():
        store.put(cid, data)
    assert set(store.cids()) == set(held)
    gone = next(iter(held))
    assert store.delete(gone)
    assert not store.delete(gone)
    assert set(store.cids()) == set(held) - {gone}
    assert stats(store)["blocks"] == 19


def test_reopening_counts_what_is_there_and_clears_torn_writes(tmp_path: Path) -> None:
    first = BlockStore(tmp_path / "blocks", sync=False)
    for i in range(5):
        data = os.urandom(100 + i)
        first.put(Cid.of(RAW, data), data)
    shard = next(p for p in first.root.iterdir())
    torn = shard / ".put-crashed"
    torn.write_bytes(b"half a block")
    second = BlockStore(tmp_path / "blocks")
    assert (second.statistics().blocks, second.statistics().bytes) == (5, 510)
    assert second.statistics().puts == 0
    assert not torn.exists()


def test_many_threads_at_once_keep_counts_exact(store: BlockStore) -> None:
    payloads = [os.urandom(2048) for _ in range(40)]
    cids = [Cid.of(RAW, p) for p in payloads]
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(len(payloads)):
                j = (i * 7 + seed) % len(payloads)  # every thread puts every block
                store.put(cids[j], payloads[j])
                assert store.get(cids[j]) == payloads[j]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = stats(store)
    assert counts["blocks"] == counts["puts"] == 40
    assert counts["bytes"] == 40 * 2048
    assert counts["gets"] == 8 * 40
    assert sorted(p.name for p in store.root.rglob("*") if p.is_file()) == sorted(
        c.text for c in cids
    )
