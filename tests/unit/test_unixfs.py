"""The UnixFS DAG builder and reader (node.content).

CIDs are never proven with values this code computed: they are compared with the
reference JS importer in tests/oracle (installed by `make oracle`), with vectors
kubo's own test suite publishes, and with well-known published CIDs. Round trips,
corruption and malformed input are property-tested.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.content import (
    DAG_PB,
    KUBO,
    Cid,
    ContentError,
    Layout,
    add_bytes,
    add_path,
    aread_tree,
    import_bytes,
    import_path,
    parse_cid,
    read_file,
    read_tree,
)
from node.content.filedag import import_chunks
from node.content.nodes import FileNode, read_node

REPO = Path(__file__).resolve().parents[2]
ORACLE_DIR = REPO / "tests" / "oracle"
CHUNK = KUBO.chunk_size
EMPTY_FILE = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
EMPTY_DIR = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
SMALL = Layout(chunk_size=8, max_links=3)

# A tree as the tests describe it: file bytes, a directory {name: tree}, or a symlink.
Tree = bytes | dict[str, "Tree"] | tuple[str, str]


def oracle(*paths: Path, layout: Layout = KUBO) -> list[str]:
    """Root CIDs the reference importer prints for `paths`, one oracle process for all."""
    if not (ORACLE_DIR / "node_modules" / ".installed").exists():
        pytest.fail("the UnixFS oracle is not installed: run `make oracle`")
    out = subprocess.run(
        ["node", str(ORACLE_DIR / "unixfs-cid.mjs"), "--chunk-size", str(layout.chunk_size),
         "--max-links", str(layout.max_links), *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout.split()


def write_tree(path: Path, tree: Tree) -> None:
    if isinstance(tree, bytes):
        path.write_bytes(tree)
    elif isinstance(tree, tuple):
        os.symlink(tree[1], path)
    else:
        path.mkdir()
        for name, child in tree.items():
            write_tree(path / name, child)


def snapshot(path: Path) -> Tree:
    """What is on disk at `path`, in the form `write_tree` takes."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return {name: snapshot(path / name) for name in os.listdir(path)}
    return path.read_bytes()


def chacha(seed: str) -> Iterator[bytes]:
    """kubo's test data (test/cli/testutils/random_deterministic.go): the ChaCha20 key
    stream, key sha256(seed), zero nonce, in 1 MiB pieces."""
    key = hashlib.sha256(seed.encode()).digest()
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    while True:
        yield stream.update(bytes(1 << 20))


def take(stream: Iterator[bytes], size: int) -> Iterator[bytes]:
    while size > 0:
        piece = next(stream)[:size]
        size -= len(piece)
        yield piece


def pattern(size: int) -> bytes:
    return random.Random(size).randbytes(size)


# -- published vectors -------------------------------------------------------------


@pytest.mark.timeout(30)
def test_well_known_cids(tmp_path: Path) -> None:
    assert add_bytes(b"")[0] == EMPTY_FILE
    assert add_path(tmp_path)[0] == EMPTY_DIR
    # kubo test/cli/cid_profiles_test.go, SmallFileCID of unixfs-v1-2025 ("hello world").
    assert add_bytes(b"hello world")[0] == (
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )
    # The empty directory as CIDv0 (kubo's default add) is the same block.
    v0 = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
    assert (v0.version, v0.digest) == (0, parse_cid(EMPTY_DIR).digest)


@pytest.mark.timeout(120)
def test_kubo_profile_vectors(tmp_path: Path) -> None:
    """Vectors kubo itself prints (test/cli/cid_profiles_test.go, profile unixfs-v1-2025:
    CIDv1, raw leaves, 1 MiB chunks, 1024 links); only chunk size and fan-out differ
    from the default this package uses."""
    v1 = Layout(chunk_size=1 << 20, max_links=1024)
    data = b"".join(take(chacha("chunk-v1-seed"), (1 << 20) + 1))
    assert add_bytes(data[: 1 << 20], layout=v1)[0] == (
        "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"
    )
    assert add_bytes(data, layout=v1)[0] == (
        "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"
    )
    # DirBasicCID: 4766 files named from the key stream, each holding "x".
    alphabet = "abcdefghijklmnopqrstuvwxyz01234567890-_"
    names = b"".join(take(chacha("hamt-unixfs-v1-2025"), 4765 * 11 + 21))
    for start in [*range(0, 4765 * 11, 11), 4765 * 11]:
        size = 21 if start == 4765 * 11 else 11
        name = "".join(alphabet[b % len(alphabet)] for b in names[start : start + size])
        (tmp_path / name).write_bytes(b"x")
    assert add_path(tmp_path, layout=v1)[0] == (
        "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4"
    )


@pytest.mark.timeout(120)
def test_kubo_rebalanced_file_vector() -> None:
    """1024 chunks + 1 byte: the root links the full 1024-leaf node and a node wrapping
    the lone last leaf. Both CIDs are kubo's (FileOverMaxLinksCID, FileAtMaxLinksCID)."""
    tree: dict[Cid, bytes] = {}

    def put(cid: Cid, block: bytes) -> None:
        if cid.codec == DAG_PB:
            tree[cid] = block

    root = import_chunks(take(chacha("v1-2025-seed"), (1 << 30) + 1), put, 1024).cid
    assert root.text == "bafybeibdsi225ugbkmpbdohnxioyab6jsqrmkts3twhpvfnzp77xtzpyhe"
    node = read_node(root, tree[root])
    assert isinstance(node, FileNode) and len(node.children) == 2
    assert node.children[0][0].text == (
        "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm"
    )


# -- against the oracle ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_files_match_oracle(tmp_path: Path) -> None:
    sizes = [0, 11, CHUNK, CHUNK + 1, 174 * CHUNK, 174 * CHUNK + 1]
    paths = [tmp_path / f"f{size}" for size in sizes]
    for path, size in zip(paths, sizes, strict=True):
        path.write_bytes(pattern(size))
    ours = []
    for path in paths:
        cid, blocks = add_path(path)
        assert b"".join(read_file(cid, blocks.__getitem__)) == path.read_bytes()
        ours.append(cid)
    assert ours == oracle(*paths)
    assert ours[0] == EMPTY_FILE
    assert [cid[:4] for cid in ours] == ["bafk"] * 3 + ["bafy"] * 3


@pytest.mark.timeout(60)
def test_deep_file_layouts_match_oracle(tmp_path: Path) -> None:
    """Small chunks and fan-out 3 reach depth 4 within a few hundred bytes: every edge
    of the balanced layout (full levels, one over, a lone leaf at each depth)."""
    layout = Layout(chunk_size=2, max_links=3)
    chunk_counts = [1, 2, 3, 4, 8, 9, 10, 26, 27, 28, 30, 81, 82, 100]
    paths = []
    for count in chunk_counts:
        for size in {2 * count - 1, 2 * count}:
            paths.append(tmp_path / f"f{size}")
            paths[-1].write_bytes(pattern(size))
    assert [add_path(path, layout=layout)[0] for path in paths] == oracle(*paths, layout=layout)


@pytest.mark.timeout(60)
def test_tree_matches_oracle(tmp_path: Path) -> None:
    root = tmp_path / "results"
    tree: Tree = {
        "empty-dir": {},
        "empty-file": b"",
        "stdout": b"hello\n",
        "big": pattern(3 * CHUNK + 5),
        "nested": {"a": {"b": {"c": b"deep"}}, "same": b"hello\n"},
        "\u00e9t\u00e9": b"nfc",
        "e\u0301te\u0301": b"nfd",
        "日本語.txt": "テキスト".encode(),
        "emoji-\U0001f600": b"",
        ".hidden": b"dot file",
        "B": b"upper sorts first",
        "a b": b"space",
        "a.txt": b"dot",
        "link": ("link", "nested/a/b/c"),
        "dangling": ("link", "/nowhere/at/all"),
    }
    write_tree(root, tree)
    cid, blocks = add_path(root)
    assert [cid, add_path(root / "nested")[0]] == oracle(root, root / "nested")
    read_tree(cid, blocks.__getitem__, tmp_path / "copy")
    assert snapshot(tmp_path / "copy") == tree


names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\0"),
    min_size=1,
    max_size=10,
).filter(lambda name: name not in (".", ".."))
leaves = st.binary(max_size=40) | st.tuples(st.just("link"), names)
trees: st.SearchStrategy[dict[str, Tree]] = st.recursive(
    st.dictionaries(names, leaves, max_size=4),
    lambda children: st.dictionaries(names, children | leaves, max_size=4),
    max_leaves=12,
)


@pytest.mark.timeout(240)
@settings(max_examples=10, deadline=None)
@given(st.lists(trees, min_size=1, max_size=6))
def test_random_trees_match_oracle(batch: list[dict[str, Tree]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"t{i}" for i in range(len(batch))]
        for path, tree in zip(paths, batch, strict=True):
            write_tree(path, tree)
        assert [add_path(path, layout=SMALL)[0] for path in paths] == oracle(*paths, layout=SMALL)


# -- round trips and corruption ----------------------------------------------------------


@pytest.mark.timeout(240)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.sampled_from([KUBO, SMALL, Layout(chunk_size=1, max_links=2)]))
def test_round_trip_is_byte_identical(tree: dict[str, Tree], layout: Layout) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp) / "in", tree)
        blocks: dict[Cid, bytes] = {}
        root = import_path(Path(tmp) / "in", blocks.__setitem__, layout=layout)
        read_tree(root.text, blocks.__getitem__, Path(tmp) / "out")
        assert snapshot(Path(tmp) / "out") == tree


@pytest.mark.timeout(240)
@settings(max_examples=60, deadline=None)
@given(trees, st.data())
def test_a_corrupted_block_is_detected(tree: dict[str, Tree], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp) / "in", tree)
        root, blocks = add_path(Path(tmp) / "in", layout=SMALL)
        victim = data.draw(st.sampled_from(sorted(blocks, key=str)))
        block = bytearray(blocks[victim])
        if block:
            block[data.draw(st.integers(0, len(block) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        else:
            block = bytearray(b"\0")
        blocks[victim] = bytes(block)
        with pytest.raises(ContentError, match=str(victim)):
            read_tree(root, blocks.__getitem__, Path(tmp) / "out")
        assert sorted(os.listdir(tmp)) == ["in"]  # nothing partial left behind


@pytest.mark.timeout(30)
def test_bytes_and_paths_agree_and_file_reads_stream(tmp_path: Path) -> None:
    data = pattern(2 * CHUNK + 3)
    (tmp_path / "f").write_bytes(data)
    cid, blocks = add_bytes(data)
    assert add_path(tmp_path / "f") == (cid, blocks)
    pieces = list(read_file(cid, blocks.__getitem__))
    assert [len(piece) for piece in pieces] == [CHUNK, CHUNK, 3]


@pytest.mark.timeout(60)
def test_deep_directory_nesting_does_not_recurse(tmp_path: Path) -> None:
    leaf = tmp_path / "in"
    leaf.mkdir()
    for _ in range(300):
        leaf /= "d"
        leaf.mkdir()
    (leaf / "f").write_bytes(b"bottom")
    limit = sys.getrecursionlimit()
    # Far fewer frames than the tree is deep: a recursive walk would fail.
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        root, blocks = add_path(tmp_path / "in")
        read_tree(root, blocks.__getitem__, tmp_path / "out")
    finally:
        sys.setrecursionlimit(limit)
    assert (tmp_path / "out").joinpath(*["d"] * 300, "f").read_bytes() == b"bottom"


@pytest.mark.timeout(30)
def test_aread_tree_fetches_with_an_async_get(tmp_path: Path) -> None:
    tree: Tree = {"x": b"1", "y": {"z": pattern(100)}}
    write_tree(tmp_path / "in", tree)
    root, blocks = add_path(tmp_path / "in", layout=SMALL)

    async def aget(cid: Cid) -> bytes:
        await anyio.sleep(0)
        return blocks[cid]

    anyio.run(aread_tree, root, aget, tmp_path / "out", backend="trio")
    assert snapshot(tmp_path / "out") == tree


# -- what is refused ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_special_files_are_refused_by_name(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ContentError, match="pipe"):
        add_path(tmp_path)


@pytest.mark.timeout(60)
def test_directories_kubo_would_shard_are_refused(tmp_path: Path) -> None:
    # 901 entries x (255-byte name + 36-byte CID) reaches the 256 KiB HAMT threshold.
    big = tmp_path / "big"
    big.mkdir()
    for i in range(901):
        (big / f"{i:03d}".ljust(255, "n")).touch()
    with pytest.raises(ContentError, match=r"big.*HAMT"):
        add_path(big)
    (big / f"{0:03d}".ljust(255, "n")).unlink()
    assert add_path(big)[0].startswith("bafy")


@pytest.mark.timeout(30)
def test_read_tree_refuses_an_existing_destination(tmp_path: Path) -> None:
    blocks: dict[Cid, bytes] = {}
    root = import_bytes(b"data", blocks.__setitem__)
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        read_tree(root, blocks.__getitem__, tmp_path / "out")


@pytest.mark.timeout(30)
def test_read_file_refuses_a_directory(tmp_path: Path) -> None:
    root, blocks = add_path(tmp_path)
    with pytest.raises(ContentError, match="not a file"):
        read_file(root, blocks.__getitem__)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "value",
    [
        "",
        "bafy",
        "Bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku0",
        "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA",
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3N0",
        bytes((1, 0x71, 0x12, 0x20)) + bytes(32),  # dag-cbor
        bytes((1, 0x55, 0x13, 0x40)) + bytes(64),  # sha2-512
        bytes((2, 0x55, 0x12, 0x20)) + bytes(32),  # version 2
        bytes((1, 0x55, 0x12, 0x20)) + bytes(31),  # short digest
        bytes((1, 0xD5, 0x00, 0x12, 0x20)) + bytes(32),  # non-minimal varint
    ],
)
def test_malformed_cids_raise_content_error(value: str | bytes) -> None:
    with pytest.raises(ContentError, match="CID"):
        parse_cid(value)


LINK = bytes.fromhex("0a24") + parse_cid(EMPTY_FILE).binary  # PBLink.Hash
DIR_DATA = bytes.fromhex("0a020801")  # PBNode.Data = UnixFS{Type: Directory}


def link_field(body: bytes) -> bytes:
    return bytes((0x12, len(body))) + body


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("block", "why"),
    [
        (b"\xff", "varint"),
        (bytes.fromhex("0a05"), "past the end"),
        (bytes.fromhex("1a00"), "unexpected field 3"),
        (DIR_DATA + link_field(LINK + b"\x12\x01a"), "follows Data"),
        (link_field(b"\x12\x01a") + DIR_DATA, "no Hash"),
        (link_field(b"\x12\x01a" + LINK) + DIR_DATA, "out of order"),
        (b"", "without UnixFS Data"),
        (link_field(LINK + b"\x12\x01a") * 2 + DIR_DATA, "twice"),
        (link_field(LINK + b"\x12\x02..") + DIR_DATA, "invalid entry name"),
        (link_field(LINK + b"\x12\x03a/b") + DIR_DATA, "invalid entry name"),
        (link_field(LINK) + DIR_DATA, "invalid entry name"),
        (link_field(LINK) + bytes.fromhex("0a020802"), "1 links but 0 blocksizes"),
        (bytes.fromhex("0a0408021803"), "filesize 3 but content is 0"),
        (bytes.fromhex("0a020805"), "HAMT_SHARD"),
        (bytes.fromhex("0a020809"), "unknown UnixFS Type 9"),
        (bytes.fromhex("0a021801"), "no Type"),
        (bytes.fromhex("0a020804"), "invalid symlink"),
    ],
)
def test_malformed_blocks_raise_content_error(block: bytes, why: str) -> None:
    cid = Cid.of(DAG_PB, block)
    with pytest.raises(ContentError, match=why) as caught:
        read_node(cid, block)
    assert str(cid) in str(caught.value)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120) | st.builds(lambda d: b"\x12" + d, st.binary(max_size=120)))
def test_arbitrary_blocks_decode_or_raise_content_error(block: bytes) -> None:
    with contextlib.suppress(ContentError):
        read_node(Cid.of(DAG_PB, block), block)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.text(max_size=60))
def test_arbitrary_cids_parse_or_raise_content_error(binary: bytes, text: str) -> None:
    for value in (binary, text, "b" + text, "Qm" + text):
        try:
            parsed = parse_cid(value)
        except ContentError:
            continue
        assert parse_cid(parsed.text) == parsed == parse_cid(parsed.binary)
