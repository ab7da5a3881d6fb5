"""Owns the UnixFS node kinds as blocks: the file, directory and symlink blocks the
importer writes, and the strict reading of any block into a :class:`FileNode`,
:class:`DirectoryNode` or :class:`SymlinkNode`.

Reading checks what a reader needs to trust before it writes anything: a file
node's link count equals its ``blocksizes`` count and its ``filesize`` is its own
data plus those sizes; a directory's entries are unique single path components.
HAMT-sharded directories and UnixFS Metadata nodes are not supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.content.blocks import Ref
from node.content.cid import CODECS, DAG_PB, RAW, Cid
from node.content.dagpb import PBLink, decode_node, encode_node
from node.content.errors import ContentError
from node.content.unixfs_data import DataType, UnixFSData, decode_data, encode_data


@dataclass(frozen=True, slots=True)
class FileNode:
    """File content: ``data`` first, then each child's content in order.

    ``children`` pairs each child's CID with the content bytes it must hold.
    """

    data: bytes
    children: tuple[tuple[Cid, int], ...]

    @property
    def size(self) -> int:
        """Content bytes under this node."""
        return len(self.data) + sum(size for _, size in self.children)


@dataclass(frozen=True, slots=True)
class DirectoryNode:
    """Entries as ``(name, cid)``; each name is one valid, unique path component."""

    entries: tuple[tuple[bytes, Cid], ...]


@dataclass(frozen=True, slots=True)
class SymlinkNode:
    """A symbolic link to ``target`` (stored verbatim, never followed here)."""

    target: bytes


Node = FileNode | DirectoryNode | SymlinkNode


def encode_file(children: Sequence[Ref]) -> bytes:
    """The dag-pb block of a file node over ``children`` (raw leaves or file nodes)."""
    links = [PBLink(child.cid, b"", child.tsize) for child in children]
    sizes = tuple(child.filesize for child in children)
    return encode_node(links, encode_data(UnixFSData(DataType.FILE, None, sum(sizes), sizes)))


def encode_directory(entries: Sequence[tuple[bytes, Ref]]) -> bytes:
    """The dag-pb block of a directory; links are sorted by name bytes, as dag-pb asks."""
    links = [PBLink(ref.cid, name, ref.tsize) for name, ref in sorted(entries, key=_name)]
    return encode_node(links, encode_data(UnixFSData(DataType.DIRECTORY)))


def _name(entry: tuple[bytes, Ref]) -> bytes:
    return entry[0]


def encode_symlink(target: bytes) -> bytes:
    """The dag-pb block of a symlink to ``target``."""
    return encode_node((), encode_data(UnixFSData(DataType.SYMLINK, target)))


def read_node(cid: Cid, block: bytes) -> Node:
    """The UnixFS node in ``block`` (already verified against ``cid``).

    Raises :class:`ContentError` naming ``cid`` if the block is not a well-formed
    file, directory or symlink node.
    """
    if cid.codec == RAW:
        return FileNode(block, ())
    if cid.codec != DAG_PB:
        raise ContentError(f"block {cid}: codec {CODECS.get(cid.codec, cid.codec)} is not UnixFS")
    pb = decode_node(block, cid)
    if pb.data is None:
        raise ContentError(f"block {cid}: dag-pb node without UnixFS Data")
    what = f"UnixFS node {cid}"
    message = decode_data(pb.data, what)
    if message.type in (DataType.FILE, DataType.RAW):
        return _file_node(pb.links, message, what)
    if message.type == DataType.DIRECTORY:
        return _directory_node(pb.links, what)
    if message.type == DataType.SYMLINK:
        return _symlink_node(pb.links, message, what)
    raise ContentError(f"{what}: UnixFS {message.type.name} nodes are not supported")


def _file_node(links: Sequence[PBLink], message: UnixFSData, what: str) -> FileNode:
    if len(links) != len(message.blocksizes):
        raise ContentError(f"{what}: {len(links)} links but {len(message.blocksizes)} blocksizes")
    node = FileNode(
        message.data or b"",
        tuple((link.cid, size) for link, size in zip(links, message.blocksizes, strict=True)),
    )
    if message.filesize is not None and message.filesize != node.size:
        raise ContentError(f"{what}: filesize {message.filesize} but content is {node.size}")
    return node


def _directory_node(links: Sequence[PBLink], what: str) -> DirectoryNode:
    names: set[bytes] = set()
    for link in links:
        name = link.name
        if name is None or name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
            raise ContentError(f"{what}: invalid entry name {name!r}")
        if name in names:
            raise ContentError(f"{what}: entry {name!r} appears twice")
        names.add(name)
    return DirectoryNode(tuple((link.name or b"", link.cid) for link in links))


def _symlink_node(links: Sequence[PBLink], message: UnixFSData, what: str) -> SymlinkNode:
    target = message.data or b""
    if links or not target or b"\0" in target:
        raise ContentError(f"{what}: invalid symlink (links or an empty or NUL target)")
    return SymlinkNode(target)
