"""Content addressing for published results: the UnixFS DAG builder and reader.

A tree added here gets the root CID kubo prints for ``ipfs add --cid-version=1
--raw-leaves -r -H`` (256 KiB chunks, raw leaves, balanced layout of at most 174
links a node, CIDv1 sha2-256, base32), proven against the reference JS importer in
``tests/oracle``. Reading verifies every block against its CID.

Adding: :func:`import_path` / :func:`import_bytes` stream blocks to a ``put(cid,
block)`` callable and return the root :class:`Cid`; :func:`add_path` /
:func:`add_bytes` return ``(root CID text, {cid: block})`` in memory. Reading:
:func:`read_file` yields a file's bytes, :func:`read_tree` / :func:`aread_tree`
write a tree to disk, fetching with ``get(cid) -> bytes``. Every malformed CID,
block or unrepresentable tree raises :class:`ContentError`.
"""

from node.content.blocks import Get, Put
from node.content.cid import DAG_PB, RAW, Cid, parse_cid
from node.content.errors import ContentError
from node.content.filedag import KUBO, Layout
from node.content.importer import add_bytes, add_path, import_bytes, import_path
from node.content.reader import aread_tree, read_file, read_tree

__all__ = [
    "DAG_PB",
    "KUBO",
    "RAW",
    "Cid",
    "ContentError",
    "Get",
    "Layout",
    "Put",
    "add_bytes",
    "add_path",
    "aread_tree",
    "import_bytes",
    "import_path",
    "parse_cid",
    "read_file",
    "read_tree",
]
