"""Trees as tar streams (node.content.tarball): packing a local tree or a stored DAG,
unpacking safely, and every kind of entry that must be refused by name."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.content import Cid, add_path, import_path, parse_cid
from node.content.tarball import (
    ChunkReader,
    TarError,
    dag_entries,
    import_archive,
    path_entries,
    tar_stream,
    unpack,
)
from tests.unit.test_unixfs import Tree, snapshot, trees, write_tree

SAMPLE: dict[str, Tree] = {
    "a.txt": b"hello\n",
    "empty": b"",
    "sub": {"big.bin": os.urandom(600_000), "deeper": {}, "link": ("link", "../a.txt")},
    "abs-link": ("link", "/etc/hostname"),
}


def pack(path: Path, name: str = "root") -> bytes:
    return b"".join(tar_stream(path_entries(path, name)))


@pytest.mark.timeout(240)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees | st.binary(max_size=2000))
def test_local_tree_round_trips_through_tar(tree: Tree) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp) / "in", tree)
        unpack(io.BytesIO(pack(Path(tmp) / "in")), Path(tmp) / "out")
        assert snapshot(Path(tmp) / "out") == tree


@pytest.mark.timeout(240)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_a_stored_dag_streams_as_the_tree_it_was_added_from(tree: dict[str, Tree]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp) / "in", tree)
        root, blocks = add_path(Path(tmp) / "in")
        entries = dag_entries(parse_cid(root), blocks.__getitem__, root)
        unpack(io.BytesIO(b"".join(tar_stream(entries))), Path(tmp) / "out")
        assert snapshot(Path(tmp) / "out") == tree


def test_big_files_stream_in_pieces_and_archives_read_with_tarfile(tmp_path: Path) -> None:
    write_tree(tmp_path / "in", SAMPLE)
    pieces = list(tar_stream(path_entries(tmp_path / "in", "in")))
    assert max(len(p) for p in pieces) <= 256 * 1024
    with tarfile.open(fileobj=io.BytesIO(b"".join(pieces))) as tar:
        names = tar.getnames()
    assert names[0] == "in"
    assert set(names) == {
        "in",
        "in/a.txt",
        "in/abs-link",
        "in/empty",
        "in/sub",
        "in/sub/big.bin",
        "in/sub/deeper",
        "in/sub/link",
    }


def test_archives_made_by_gnu_tar_unpack(tmp_path: Path) -> None:
    write_tree(tmp_path / "in", SAMPLE)
    for i, args in enumerate((["-C", str(tmp_path), "in"], ["-C", str(tmp_path / "in"), "."])):
        archive = subprocess.run(["tar", "-cf", "-", *args], capture_output=True, check=True)
        unpack(io.BytesIO(archive.stdout), tmp_path / f"out{i}")
        assert snapshot(tmp_path / f"out{i}") == SAMPLE


def test_import_archive_gives_the_cid_of_the_tree(tmp_path: Path) -> None:
    write_tree(tmp_path / "in", SAMPLE)
    blocks: dict[Cid, bytes] = {}
    (tmp_path / "scratch").mkdir()
    cid = import_archive(
        io.BytesIO(pack(tmp_path / "in")), blocks.__setitem__, tmp_path / "scratch"
    )
    assert cid == import_path(tmp_path / "in", {}.__setitem__)
    assert cid.text == add_path(tmp_path / "in")[0]


def tar_of(*members: tuple[str, str, str]) -> bytes:
    """A tar of (name, type, data-or-link-target) members, made with tarfile."""
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chardev": tarfile.CHRTYPE,
        "blockdev": tarfile.BLKTYPE,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            data = payload.encode() if kind == "file" else b""
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


REFUSED = {
    "absolute": (tar_of(("/etc/passwd", "file", "x")), "'/etc/passwd': absolute"),
    "dotdot": (tar_of(("../x", "file", "x")), "'../x': '..'"),
    "inner dotdot": (tar_of(("a", "dir", ""), ("a/b/../../x", "file", "")), "'a/b/../../x'"),
    "two roots": (tar_of(("a", "file", ""), ("b", "file", "")), "'b': the archive must hold one"),
    "inside a file": (tar_of(("a", "file", "x"), ("a/b", "file", "")), "'a/b': the root is a file"),
    "through a symlink": (
        tar_of(("a", "dir", ""), ("a/l", "symlink", "/tmp"), ("a/l/x", "file", "")),
        "'a/l/x': l is a symlink, not a directory",
    ),
    "duplicate": (tar_of(("a", "dir", ""), ("a/x", "file", ""), ("a/x", "file", "")), "appears"),
    "hard link": (tar_of(("a", "dir", ""), ("a/h", "hardlink", "a")), "'a/h' is a hard link"),
    "fifo": (tar_of(("a", "dir", ""), ("a/f", "fifo", "")), "'a/f' is a fifo"),
    "char device": (tar_of(("a", "chardev", "")), "'a' is a character device"),
    "block device": (tar_of(("a", "blockdev", "")), "'a' is a block device"),
    "empty symlink": (tar_of(("a", "symlink", "")), "'a': a symlink without a target"),
    "no entries": (tar_of(), "holds no entry"),
    "not a tar": (b"hello" * 300, "not a readable tar archive"),
    "truncated": (tar_of(("a", "file", "x" * 5000))[:1500], "not a readable tar archive"),
}


@pytest.mark.parametrize("archive,message", REFUSED.values(), ids=REFUSED.keys())
def test_unsafe_or_unsupported_archives_are_refused_by_entry(
    tmp_path: Path, archive: bytes, message: str
) -> None:
    with pytest.raises(TarError, match=re.escape(message)):
        unpack(io.BytesIO(archive), tmp_path / "out")
    assert os.listdir(tmp_path) == []  # nothing partial is left


def test_unpack_refuses_an_existing_destination(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        unpack(io.BytesIO(tar_of(("a", "file", "x"))), tmp_path / "out")


def test_path_entries_refuse_special_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "pipe")
    with pytest.raises(TarError, match="pipe: not a regular file"):
        pack(tmp_path / "in")


def test_a_file_that_changes_while_packed_is_caught(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100)
    entries = list(path_entries(tmp_path / "f", "f"))
    (tmp_path / "f").write_bytes(b"x" * 50)
    with pytest.raises(TarError, match="50 bytes read, 100 expected"):
        b"".join(tar_stream(entries))


@pytest.mark.parametrize("step", [7, 4096, 10_000])
def test_chunk_reader_reads_any_chunking(step: int) -> None:
    data = os.urandom(10_000)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    reader = io.BufferedReader(ChunkReader([b"", *chunks, b""]))
    assert reader.read(3) + reader.read() == data
    assert reader.read() == b""
