"""Owns adding content: bytes, a file or a directory tree become a UnixFS DAG whose
root CID is the one kubo prints for ``ipfs add --cid-version=1 --raw-leaves -r -H``.

What a tree holds and how it maps, as kubo does by default:

- a regular file: its file DAG (see :mod:`node.content.filedag`), streamed chunk
  by chunk, so a big tree is never held in memory;
- a directory: a flat UnixFS directory, entries sorted by name bytes, named as the
  file system names them (``os.fsencode``, no Unicode normalisation); empty ones too;
- a symlink: a UnixFS symlink node holding its target, never followed (kubo's
  default; the root itself too);
- hidden (dot) files are included, as with kubo's ``--hidden``; plain ``ipfs add -r``
  would leave them out;
- anything else (fifo, socket, device) raises :class:`ContentError` naming the path.

Kubo turns a directory into a HAMT once its links' names and CIDs reach 256 KiB
(about 5,000 entries with short names). That is not implemented: such a directory
raises :class:`ContentError` naming it rather than get a CID kubo would not print.
File system errors (missing path, no permission) raise ``OSError`` unchanged.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from node.content.blocks import Put, Ref, store
from node.content.cid import DAG_PB, Cid
from node.content.errors import ContentError
from node.content.filedag import KUBO, Layout, import_chunks, read_chunks, split
from node.content.nodes import encode_directory, encode_symlink

# go-unixfs HAMTShardingSize: kubo shards once sum(len(name) + len(cid)) reaches it
# (older kubo at >=, newer at >; refusing from >= never yields a CID kubo would not).
HAMT_THRESHOLD = 256 * 1024

Blocks = dict[Cid, bytes]


def import_bytes(data: bytes, put: Put, *, layout: Layout = KUBO) -> Cid:
    """Puts the file DAG of ``data`` and returns its root CID."""
    return import_chunks(split(data, layout.chunk_size), put, layout.max_links).cid


def import_path(path: str | os.PathLike[str], put: Put, *, layout: Layout = KUBO) -> Cid:
    """Puts the DAG of the file, directory tree or symlink at ``path`` and returns
    its root CID; see the module docstring for what maps to what and what raises."""
    root = Path(path)
    mode = os.lstat(root).st_mode
    if not stat.S_ISDIR(mode):
        return _import_entry(root, mode, put, layout).cid
    # Depth-first with an explicit stack: a deep tree must not hit the recursion limit.
    stack = [_Directory(root)]
    while True:
        top = stack[-1]
        if top.pending:
            name = top.pending.pop()
            child = top.path / os.fsdecode(name)
            mode = os.lstat(child).st_mode
            if stat.S_ISDIR(mode):
                stack.append(_Directory(child, name))
            else:
                top.entries.append((name, _import_entry(child, mode, put, layout)))
            continue
        stack.pop()
        ref = top.finish(put)
        if not stack:
            return ref.cid
        stack[-1].entries.append((top.name, ref))


def add_bytes(data: bytes, *, layout: Layout = KUBO) -> tuple[str, Blocks]:
    """The root CID text of ``data`` and all its blocks, in memory."""
    blocks: Blocks = {}
    return import_bytes(data, blocks.__setitem__, layout=layout).text, blocks


def add_path(path: str | os.PathLike[str], *, layout: Layout = KUBO) -> tuple[str, Blocks]:
    """The root CID text of the tree at ``path`` and all its blocks, in memory; for big
    trees use :func:`import_path` with a blockstore's ``put``."""
    blocks: Blocks = {}
    return import_path(path, blocks.__setitem__, layout=layout).text, blocks


@dataclass
class _Directory:
    """A directory being imported: names still to visit, and entries done."""

    path: Path
    name: bytes = b""
    pending: list[bytes] = field(init=False)
    entries: list[tuple[bytes, Ref]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pending = sorted((os.fsencode(name) for name in os.listdir(self.path)), reverse=True)

    def finish(self, put: Put) -> Ref:
        estimate = sum(len(name) + len(ref.cid.binary) for name, ref in self.entries)
        if estimate >= HAMT_THRESHOLD:
            raise ContentError(
                f"{self.path}: {len(self.entries)} entries ({estimate} bytes of names and "
                f"CIDs) would make kubo shard it (HAMT), which is not implemented"
            )
        refs = [ref for _, ref in self.entries]
        return store(put, DAG_PB, encode_directory(self.entries), refs)


def _import_entry(path: Path, mode: int, put: Put, layout: Layout) -> Ref:
    if stat.S_ISLNK(mode):
        block = encode_symlink(os.fsencode(os.readlink(path)))
        return store(put, DAG_PB, block)
    if stat.S_ISREG(mode):
        with open(path, "rb") as stream:
            return import_chunks(read_chunks(stream, layout.chunk_size), put, layout.max_links)
    raise ContentError(f"{path}: not a regular file, directory or symlink; cannot add it")
