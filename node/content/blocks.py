"""Owns moving blocks in and out: the ``put`` and ``get`` callables a blockstore
offers, storing a new block as a :class:`Ref`, and fetching a block verified against
its CID.

``put(cid, block)`` may be called more than once with the same CID (identical
content twice in a tree); a blockstore should treat that as a no-op. ``get(cid)``
returns the block's bytes; what it raises for a missing block is its own business
and passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from node.content.cid import Cid

Put = Callable[[Cid, bytes], None]
Get = Callable[[Cid], bytes]


@dataclass(frozen=True, slots=True)
class Ref:
    """A finished subtree as its parent links to it.

    ``tsize`` is the dag-pb Tsize: the bytes of every block in the subtree.
    ``filesize`` is the file content under it (the UnixFS ``blocksizes`` entry);
    0 for directories and symlinks.
    """

    cid: Cid
    tsize: int
    filesize: int = 0


def store(
    put: Put, codec: int, block: bytes, children: Iterable[Ref] = (), filesize: int = 0
) -> Ref:
    """Hands ``block`` to ``put`` under its CIDv1 and returns its :class:`Ref`, whose
    Tsize adds the block's length to the ``children``'s Tsizes."""
    cid = Cid.of(codec, block)
    put(cid, block)
    return Ref(cid, len(block) + sum(child.tsize for child in children), filesize)


def fetch(get: Get, cid: Cid) -> bytes:
    """The block ``get`` returns for ``cid``, after checking that it hashes to ``cid``;
    raises :class:`ContentError` naming the CID if it does not."""
    block = bytes(get(cid))
    cid.verify(block)
    return block
