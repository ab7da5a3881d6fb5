"""Owns a node's blocks on disk: :class:`BlockStore`, one file a block under
``data_dir/blocks/``, named by its CID text.

Layout, as kubo's flatfs ``next-to-last/2`` shards it: a block lives in the
subdirectory named by the two characters before the last one of its name
(``blocks/yk/bafkrei...quvyku``): about a thousand shards (base32), so a million
blocks make a thousand files a directory.

Guarantees:

- :meth:`BlockStore.put` stores a block only if it hashes to its CID; the file
  appears whole or not at all (written to a temporary file, flushed to disk, then
  linked to its name, which never replaces a file), so a crash never leaves a torn
  block under a CID name. Putting a block that is already there is a no-op.
- :meth:`BlockStore.get` returns a block only after checking it against its CID.
  A file that does not match (disk corruption, a hand edit) is logged, deleted and
  reported as missing, so the node fetches it again rather than serve bad bytes.
- Every method is safe to call from several threads at once (the node calls it
  from worker threads); the one lock guards the counters and deletions, never a
  disk write or a hash.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from node.content.cid import Cid, parse_cid
from node.content.errors import ContentError
from profiles.locks import ThreadLock

log = logging.getLogger(__name__)

_TEMP_PREFIX = ".put-"


class BlockNotFound(LookupError):
    """The store has no (intact) block for :attr:`cid`; the message names it."""

    def __init__(self, cid: Cid) -> None:
        super().__init__(f"block {cid} is not in this node's store")
        self.cid = cid


@dataclass(frozen=True, slots=True)
class BlockStoreStatistics:
    """What the store holds and what it was asked since it opened.

    ``bytes`` is the size of the blocks as written (a file whose size was changed
    behind the store's back makes it drift until the store is opened again).
    ``puts`` counts blocks written (putting a block already held is not one);
    ``gets`` counts every :meth:`BlockStore.get`, ``misses`` those that found no
    intact block, ``corrupt`` the files found damaged and deleted.
    """

    blocks: int
    bytes: int
    puts: int
    gets: int
    misses: int
    corrupt: int


class BlockStore:
    """Content-addressed blocks under ``root`` (created if missing).

    Opening scans ``root`` once to count what it holds and removes temporary files
    a crash left behind.
    """

    def __init__(self, root: str | os.PathLike[str], *, sync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._sync = sync  # fsync each block before it is linked into place
        self._lock = ThreadLock("content.blockstore")
        self._blocks = 0
        self._bytes = 0
        self._puts = self._gets = self._misses = self._corrupt = 0
        self._scan()

    def path(self, cid: Cid) -> Path:
        """Where the block ``cid`` is (or would be) stored."""
        name = cid.text
        return self.root / _shard(name) / name

    def put(self, cid: Cid, data: bytes) -> None:
        """Store ``data`` as the block ``cid``; a no-op if it is already stored.

        Raises :class:`ContentError` naming the CID if ``data`` does not hash to it,
        and ``OSError`` if the disk refuses the write (nothing is left behind then).
        """
        cid.verify(data)
        target = self.path(cid)
        if target.exists():
            return
        target.parent.mkdir(exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if self._sync:
                    out.flush()
                    os.fsync(out.fileno())
            # link() never replaces: of two threads putting one block, one wins.
            os.link(temp, target)
        except FileExistsError:
            return
        finally:
            os.unlink(temp)
        with self._lock:
            self._blocks += 1
            self._bytes += len(data)
            self._puts += 1

    def get(self, cid: Cid) -> bytes:
        """The block ``cid``, checked against it.

        Raises :class:`BlockNotFound` naming the CID if it is not stored, or if its
        file was damaged (the file is then logged and deleted).
        """
        path = self.path(cid)
        try:
            with open(path, "rb") as stream:
                inode = os.fstat(stream.fileno()).st_ino
                data = stream.read()
        except FileNotFoundError:
            self._count_get(missed=True)
            raise BlockNotFound(cid) from None
        try:
            cid.verify(data)
        except ContentError as exc:
            self._discard_corrupt(cid, path, inode, len(data), exc)
            raise BlockNotFound(cid) from None
        self._count_get(missed=False)
        return data

    def has(self, cid: Cid) -> bool:
        """Whether a file for ``cid`` exists (not read or checked: :meth:`get` does that)."""
        return self.path(cid).exists()

    def delete(self, cid: Cid) -> bool:
        """Remove the block ``cid``; returns whether it was there."""
        path = self.path(cid)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return False
            self._blocks -= 1
            self._bytes -= size
        return True

    def cids(self) -> Iterator[Cid]:
        """Every CID stored, in no particular order (a snapshot as the scan goes)."""
        for path in self._files():
            if not path.name.startswith(_TEMP_PREFIX):
                yield parse_cid(path.name)

    def statistics(self) -> BlockStoreStatistics:
        with self._lock:
            return BlockStoreStatistics(
                blocks=self._blocks,
                bytes=self._bytes,
                puts=self._puts,
                gets=self._gets,
                misses=self._misses,
                corrupt=self._corrupt,
            )

    # -- internals -------------------------------------------------------------

    def _count_get(self, *, missed: bool) -> None:
        with self._lock:
            self._gets += 1
            self._misses += missed

    def _discard_corrupt(
        self, cid: Cid, path: Path, inode: int, size: int, error: ContentError
    ) -> None:
        log.warning("deleting damaged block file %s: %s", path, error)
        with self._lock:
            self._gets += 1
            self._misses += 1
            self._corrupt += 1
            try:
                # Only the file we read: a delete and a put may have stored a good copy since.
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
                    self._blocks -= 1
                    self._bytes -= size
            except FileNotFoundError:
                pass

    def _files(self) -> Iterator[Path]:
        for shard in self.root.iterdir():
            if shard.is_dir():
                yield from shard.iterdir()

    def _scan(self) -> None:
        for path in self._files():
            if path.name.startswith(_TEMP_PREFIX):
                path.unlink(missing_ok=True)  # a put a crash cut short
            else:
                self._blocks += 1
                self._bytes += path.stat().st_size


def _shard(name: str) -> str:
    """flatfs ``next-to-last/2``: the two characters before the last one."""
    return name[-3:-1]
