"""Owns trees as tar streams: writing a local tree or a stored UnixFS DAG as a tar,
one piece at a time, and unpacking a tar safely into a new directory.

The archive shape, as kubo's ``/api/v0/get`` gives it: one top-level entry, the
tree's root (a file, a directory or a symlink) under some name, and everything
else below it. ``tar -C DIR -cf - .`` (whose first entry is ``./``) is accepted too:
the root is then that directory. Owners, times and modes are not carried (UnixFS
as kubo adds it keeps none): files come out 0644 and directories 0755 (less the
umask); names and contents are kept byte for byte.

Unpacking guarantees that nothing lands outside the destination: absolute names,
``..`` components, entries inside a file or symlink entry, duplicates, and every
entry but regular files, directories and symlinks (hard links, devices, fifos,
sparse files) raise :class:`TarError` naming the entry; symlinks are created with
their targets verbatim and never followed. The destination appears only once the
whole archive is unpacked.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import BinaryIO

from node.content.blocks import Get, Put, fetch
from node.content.cid import Cid
from node.content.errors import ContentError
from node.content.importer import import_path
from node.content.nodes import DirectoryNode, FileNode, read_node
from node.content.reader import read_file

_BLOCK = tarfile.BLOCKSIZE
_ENCODING = ("utf-8", "surrogateescape")  # any file-system name round-trips
PIECE = 256 * 1024  # what tar_stream yields at most at once (a UnixFS chunk)


class TarError(ContentError):
    """An archive that cannot be unpacked safely, or a tree that cannot be packed;
    the message names the entry."""


class Kind(Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive entry: its path (``/``-separated, relative) and what it is.

    A file has its ``size`` and ``content``, a callable yielding its bytes; a
    symlink has its ``target``.
    """

    path: str
    kind: Kind
    size: int = 0
    target: str = ""
    content: Callable[[], Iterable[bytes]] | None = None


def tar_stream(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The tar (PAX format) of ``entries``, in pieces of at most :data:`PIECE` bytes
    (more only if an entry's content yields bigger pieces).

    Raises :class:`TarError` if a file yields more or fewer bytes than its size
    (it changed while being read); the stream is then unusable.
    """
    return _coalesce(_tar_pieces(entries), PIECE)


def path_entries(path: str | os.PathLike[str], name: str) -> Iterator[Entry]:
    """The entries of the file, directory tree or symlink at ``path``, its root named
    ``name``, parents before children, names sorted. Symlinks are never followed.

    Raises :class:`TarError` for anything else (a fifo, a socket, a device) and
    ``OSError`` for what the file system refuses.
    """
    pending = [(Path(path), name)]
    while pending:
        at, arc = pending.pop()
        info = os.lstat(at)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            yield Entry(arc, Kind.DIRECTORY)
            names = sorted(os.listdir(at), key=os.fsencode, reverse=True)
            pending.extend((at / child, f"{arc}/{child}") for child in names)
        elif stat.S_ISLNK(mode):
            yield Entry(arc, Kind.SYMLINK, target=os.readlink(at))
        elif stat.S_ISREG(mode):
            yield Entry(arc, Kind.FILE, size=info.st_size, content=partial(_read_local, at))
        else:
            raise TarError(f"{at}: not a regular file, directory or symlink")


def dag_entries(root: Cid, get: Get, name: str) -> Iterator[Entry]:
    """The entries of the UnixFS tree ``root``, read through ``get`` (every block
    checked against its CID), its root named ``name``, parents before children.

    Raises :class:`ContentError` for malformed content, and whatever ``get`` raises
    for a missing block, as the walk reaches it.
    """
    pending = [(root, name)]
    while pending:
        cid, arc = pending.pop()
        node = read_node(cid, fetch(get, cid))
        if isinstance(node, FileNode):
            yield Entry(arc, Kind.FILE, size=node.size, content=partial(read_file, cid, get))
        elif isinstance(node, DirectoryNode):
            yield Entry(arc, Kind.DIRECTORY)
            for child, child_cid in reversed(node.entries):
                pending.append((child_cid, f"{arc}/{os.fsdecode(child)}"))
        else:
            yield Entry(arc, Kind.SYMLINK, target=os.fsdecode(node.target))


def unpack(archive: BinaryIO, dest: str | os.PathLike[str]) -> None:
    """Unpack the tar read from ``archive`` so that its root becomes ``dest``, which
    must not exist (its parent must). See the module docstring for what is refused.

    Raises :class:`TarError` naming the entry, ``FileExistsError`` if ``dest`` exists.
    """
    target = Path(dest)
    if os.path.lexists(target):
        raise FileExistsError(f"{target} exists")
    partial_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _Unpacker(partial_dir / "root").run(archive)
        os.rename(partial_dir / "root", target)
    finally:
        shutil.rmtree(partial_dir, ignore_errors=True)


def import_archive(archive: BinaryIO, put: Put, scratch: str | os.PathLike[str]) -> Cid:
    """Unpack ``archive`` under the directory ``scratch`` (which the caller removes)
    and add its root with ``put``; returns the root CID. Raises :class:`TarError`
    or :class:`ContentError` naming what cannot be added."""
    tree = Path(scratch) / "tree"
    unpack(archive, tree)
    return import_path(tree, put)


class ChunkReader(io.RawIOBase):
    """A readable binary file over an iterable of byte chunks (an HTTP body)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


# -- internals -----------------------------------------------------------------


def _read_local(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while piece := stream.read(PIECE):
            yield piece


def _tar_pieces(entries: Iterable[Entry]) -> Iterator[bytes]:
    for entry in entries:
        info = tarfile.TarInfo(entry.path)
        info.mtime = 0
        if entry.kind is Kind.DIRECTORY:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        elif entry.kind is Kind.SYMLINK:
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
        else:
            info.size, info.mode = entry.size, 0o644
        yield info.tobuf(tarfile.PAX_FORMAT, *_ENCODING)
        if entry.kind is Kind.FILE and entry.content is not None:
            written = 0
            for piece in entry.content():
                written += len(piece)
                yield piece
            if written != entry.size:
                raise TarError(f"{entry.path}: {written} bytes read, {entry.size} expected")
            yield b"\0" * (-written % _BLOCK)
    yield b"\0" * (2 * _BLOCK)


def _coalesce(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``pieces`` joined into chunks of at most ``size`` bytes (tar headers are tiny);
    a piece bigger than that passes alone."""
    buffer = bytearray()
    for piece in pieces:
        if buffer and len(buffer) + len(piece) > size:
            yield bytes(buffer)
            buffer.clear()
        if len(piece) >= size:
            yield piece
        else:
            buffer += piece
    if buffer:
        yield bytes(buffer)


class _Unpacker:
    """Builds one archive's tree at ``root`` (see :func:`unpack`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[tuple[str, ...], Kind] = {}  # paths below root -> what they are
        self.top: str | None = None  # the root's name; "" when the archive starts with ./

    def run(self, archive: BinaryIO) -> None:
        try:
            with tarfile.open(fileobj=archive, mode="r|", encoding=_ENCODING[0]) as tar:
                for member in tar:
                    try:
                        self._add(tar, member)
                    except OSError as exc:
                        raise TarError(f"tar entry {member.name!r}: {exc.strerror}") from None
        except tarfile.TarError as exc:
            raise TarError(f"not a readable tar archive: {exc}") from None
        if self.top is None:
            raise TarError("the archive holds no entry")

    def _add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        rel = self._relative(name)
        kind = _kind_of(member)
        if rel in self.made:
            if kind is Kind.DIRECTORY and self.made[rel] is Kind.DIRECTORY:
                return  # a directory listed twice is harmless
            raise TarError(f"tar entry {name!r}: appears twice")
        self._parents(name, rel)
        path = self.root.joinpath(*rel)
        if kind is Kind.DIRECTORY:
            path.mkdir()
        elif kind is Kind.SYMLINK:
            os.symlink(member.linkname, path)
        else:
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has content
            # "x" never replaces anything and never writes through a symlink.
            with source, open(path, "xb") as out:
                shutil.copyfileobj(source, out, PIECE)
        self.made[rel] = kind

    def _relative(self, name: str) -> tuple[str, ...]:
        """The entry's path below the root; refuses names that could escape it."""
        if name.startswith("/"):
            raise TarError(f"tar entry {name!r}: absolute paths are not allowed")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise TarError(f"tar entry {name!r}: '..' is not allowed")
        if self.top is None:
            self.top = parts[0] if parts else ""
        if self.top == "":
            return parts
        if not parts or parts[0] != self.top:
            first = parts[0] if parts else "."
            raise TarError(
                f"tar entry {name!r}: the archive must hold one top-level entry,"
                f" but has {self.top!r} and {first!r}"
            )
        return parts[1:]

    def _parents(self, name: str, rel: tuple[str, ...]) -> None:
        """Make the directories above ``rel`` that the archive did not list."""
        for depth in range(len(rel)):
            above = rel[:depth]
            kind = self.made.get(above)
            if kind is None:
                self.root.joinpath(*above).mkdir()
                self.made[above] = Kind.DIRECTORY
            elif kind is not Kind.DIRECTORY:
                where = "/".join(above) or "the root"
                raise TarError(f"tar entry {name!r}: {where} is a {kind.value}, not a directory")


_REFUSED = {
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}


def _kind_of(member: tarfile.TarInfo) -> Kind:
    if member.issparse():
        what = "a sparse file"
    elif member.isdir():
        return Kind.DIRECTORY
    elif member.issym():
        if not member.linkname:
            raise TarError(f"tar entry {member.name!r}: a symlink without a target")
        return Kind.SYMLINK
    elif member.isreg():
        return Kind.FILE
    else:
        what = _REFUSED.get(member.type, f"of tar type {member.type!r}")
    raise TarError(
        f"tar entry {member.name!r} is {what}: only regular files, directories and symlinks"
    )
