"""Result archives: a shard's results tree, named by its CID and kept as a tar.

The id is the CID of the tree (stdout, stderr, exitCode, outputs/) as
``ipfs add --cid-version=1 --raw-leaves -r`` would give it (:mod:`node.content`):
two nodes that produced the same tree produce the same id, whatever the files'
times and modes, and it is the hash the deterministic verifier compares. The
archive is the canonical tar of the tree (sorted names, zeroed owners and times).
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from node.content import ContentError, import_path, parse_cid


class ResultNotFound(KeyError):
    """No result with that id is stored on this node."""


def pack(results_dir: Path) -> bytes:
    """The canonical tar of ``results_dir`` (entries relative to it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = sorted(p for p in results_dir.rglob("*"))
        for path in paths:
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(results_dir)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.isdir() else 0o644
            info.pax_headers = {}
            if info.isfile():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            elif info.isdir():
                tar.addfile(info)
    return buf.getvalue()


def unpack_results(archive: BinaryIO, dest: Path) -> None:
    """Unpack an archive :func:`pack` made, read from ``archive``, into ``dest``
    (created); raises ``tarfile.TarError`` for an entry that would land outside it."""
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=archive) as tar:
        tar.extractall(dest, filter="data")


def result_id_of(results_dir: Path) -> str:
    """The CID of the tree at ``results_dir`` (its blocks are not kept here)."""
    return import_path(results_dir, lambda _cid, _block: None).text


@dataclass(frozen=True)
class ResultStoreStatistics:
    stored: int
    bytes_stored: int


class ResultStore:
    """Archives under ``root`` named by id. Written atomically (rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, results_dir: Path) -> str:
        """Store the tree's archive; its id (CID)."""
        result_id = result_id_of(results_dir)
        archive = pack(results_dir)
        target = self.root / f"{result_id}.tar"
        if not target.exists():
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(archive)
            tmp.replace(target)
        return result_id

    def path(self, result_id: str) -> Path:
        """Path of a stored archive; raises ResultNotFound (also for a malformed id)."""
        try:
            canonical = parse_cid(result_id).text
        except ContentError:
            raise ResultNotFound(result_id) from None
        if canonical != result_id:  # one name per result: no CIDv0 or other spellings
            raise ResultNotFound(result_id)
        path = self.root / f"{result_id}.tar"
        if not path.exists():
            raise ResultNotFound(result_id)
        return path

    def statistics(self) -> ResultStoreStatistics:
        files = list(self.root.glob("*.tar"))
        return ResultStoreStatistics(len(files), sum(f.stat().st_size for f in files))
