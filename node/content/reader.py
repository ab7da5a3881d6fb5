"""Owns reading content back: a file's bytes, or a whole tree written to disk, fetched
block by block through ``get`` with every block verified against its CID.

What a read guarantees: every block hashes to the CID that named it, every node is
well-formed UnixFS (:func:`node.content.nodes.read_node`), and every file node
holds exactly the bytes its parent declares, so the content read is byte-identical
to what was added. Any breach raises :class:`ContentError` naming the CID.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio.from_thread
import anyio.to_thread

from node.content.blocks import Get, fetch
from node.content.cid import Cid, parse_cid
from node.content.errors import ContentError
from node.content.nodes import DirectoryNode, FileNode, Node, read_node


def read_file(cid: Cid | str | bytes, get: Get) -> Iterator[bytes]:
    """The content of the file ``cid``, in pieces of at most one block.

    The root is fetched now: a bad CID, a bad root block or a root that is not a
    file raises :class:`ContentError` here; later blocks raise while iterating.
    """
    root = parse_cid(cid)
    node = _load(root, get)
    if not isinstance(node, FileNode):
        raise ContentError(f"{root} is not a file")
    return _content(node, get)


def read_tree(root: Cid | str | bytes, get: Get, dest: str | os.PathLike[str]) -> None:
    """Writes the file, directory tree or symlink ``root`` to ``dest``, which must not
    exist (its parent must). Symlinks are recreated with their targets verbatim.

    The tree is built beside ``dest`` and renamed into place only when complete, so
    ``dest`` never holds a partial tree. Raises :class:`ContentError` for bad content,
    ``FileExistsError`` if ``dest`` exists, and whatever ``get`` raises for a missing
    block.
    """
    cid = parse_cid(root)
    target = Path(dest)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "destination exists", str(target))
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write(cid, get, partial / "root")
        os.rename(partial / "root", target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


async def aread_tree(
    root: Cid | str | bytes,
    aget: Callable[[Cid], Awaitable[bytes]],
    dest: str | os.PathLike[str],
) -> None:
    """:func:`read_tree` for async code: hashing and disk writes run in a worker thread,
    each block is fetched with ``aget`` on the event loop. Same guarantees and errors;
    a cancellation takes effect once the worker finishes."""

    def get(cid: Cid) -> bytes:
        return anyio.from_thread.run(aget, cid)

    await anyio.to_thread.run_sync(read_tree, root, get, dest)


def _load(cid: Cid, get: Get) -> Node:
    return read_node(cid, fetch(get, cid))


def _content(node: FileNode, get: Get) -> Iterator[bytes]:
    if node.data:
        yield node.data
    # In-order walk with an explicit stack: a hostile DAG may be arbitrarily deep.
    stack = [iter(node.children)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        cid, size = child
        part = _load(cid, get)
        if not isinstance(part, FileNode):
            raise ContentError(f"{cid} is linked as file content but is not a file node")
        if part.size != size:
            raise ContentError(f"file block {cid} holds {part.size} bytes, its parent says {size}")
        if part.data:
            yield part.data
        if part.children:
            stack.append(iter(part.children))


def _write(root: Cid, get: Get, path: Path) -> None:
    pending = [(root, path)]
    while pending:
        cid, at = pending.pop()
        node = _load(cid, get)
        if isinstance(node, FileNode):
            # "x" refuses an existing name and never writes through a symlink.
            with open(at, "xb") as out:
                for piece in _content(node, get):
                    out.write(piece)
        elif isinstance(node, DirectoryNode):
            os.mkdir(at)
            pending.extend((child, at / os.fsdecode(name)) for name, child in node.entries)
        else:
            os.symlink(os.fsdecode(node.target), at)
