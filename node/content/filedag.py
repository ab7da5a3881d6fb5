"""Owns the DAG of one file: fixed-size chunks as raw leaves under a balanced tree of
file nodes, built as the chunks stream in, the way kubo's default ``ipfs add`` does.

The balanced layout (go-unixfs ``balanced``, the JS importer's ``balanced``): leaves
are grouped left to right into nodes of at most ``max_links`` children, those nodes
are grouped the same way, and so on until one node is left, so every leaf sits at
the same depth. A file of one chunk is that raw leaf itself (an empty file is the
empty raw block). Only ``max_links`` refs per tree level are held, never the content.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from node.content.blocks import Put, Ref, store
from node.content.cid import DAG_PB, RAW
from node.content.nodes import encode_file

# The largest chunk kubo's chunker accepts; bitswap peers refuse blocks over 2 MiB.
MAX_CHUNK_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Layout:
    """How files are cut and linked; the default is kubo's (``size-262144``, 174 links).

    Other values exist so tests can build deep trees from small files. Raises
    ``ValueError`` for a chunk size outside 1..1 MiB or fewer than 2 links a node.
    """

    chunk_size: int = 262144
    max_links: int = 174

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}, not {self.chunk_size}")
        if self.max_links < 2:
            raise ValueError(f"max_links must be at least 2, not {self.max_links}")


KUBO = Layout()


def import_chunks(chunks: Iterable[bytes], put: Put, max_links: int) -> Ref:
    """Puts the file DAG over ``chunks`` (in order) and returns its root.

    No chunks at all is the empty file.
    """
    levels: list[list[Ref]] = []
    for chunk in chunks:
        _push(levels, 0, store(put, RAW, chunk, filesize=len(chunk)), put, max_links)
    if not levels:
        return store(put, RAW, b"")
    level = 0
    # Close the partial node of each level, bottom up, until one ref is the root.
    while True:
        refs = levels[level]
        above = any(levels[level + 1 :])
        if len(refs) == 1 and not above:
            return refs[0]
        if refs:
            levels[level] = []
            _push(levels, level + 1, _file_node(refs, put), put, max_links)
        level += 1


def read_chunks(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """``stream`` cut into ``chunk_size`` pieces; only the last may be shorter, as a
    buffered binary file reads full sizes until its end."""
    while chunk := stream.read(chunk_size):
        yield chunk


def split(data: bytes, chunk_size: int) -> Iterator[bytes]:
    """``data`` cut into ``chunk_size`` pieces; only the last may be shorter."""
    view = memoryview(data)
    for start in range(0, len(data), chunk_size):
        yield bytes(view[start : start + chunk_size])


def _push(levels: list[list[Ref]], level: int, ref: Ref, put: Put, max_links: int) -> None:
    if level == len(levels):
        levels.append([])
    levels[level].append(ref)
    if len(levels[level]) == max_links:
        full, levels[level] = levels[level], []
        _push(levels, level + 1, _file_node(full, put), put, max_links)


def _file_node(children: list[Ref], put: Put) -> Ref:
    return store(
        put, DAG_PB, encode_file(children), children, sum(child.filesize for child in children)
    )
