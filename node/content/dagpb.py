"""Owns the dag-pb codec: ``PBNode { repeated PBLink Links = 2; optional bytes Data = 1 }``
with ``PBLink { Hash = 1; Name = 2; Tsize = 3 }``.

Encoding writes the canonical form (every link, then Data; each link's fields in
number order), which is what kubo and the JS importer hash. Decoding accepts only
that form, as the dag-pb spec asks, and raises :class:`ContentError` otherwise.
Link order is the caller's: directories sort their own links by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.content.cid import Cid, parse_cid
from node.content.errors import ContentError
from node.content.protobuf import LEN, VARINT, bytes_field, iter_fields, varint_field

_NODE_FIELDS = {1: (LEN,), 2: (LEN,)}
_LINK_FIELDS = {1: (LEN,), 2: (LEN,), 3: (VARINT,)}


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link: the child's CID, its name (``None`` when absent) and Tsize."""

    cid: Cid
    name: bytes | None
    tsize: int | None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A decoded dag-pb node: its links in block order and its Data (``None`` if absent)."""

    links: tuple[PBLink, ...]
    data: bytes | None


def encode_node(links: Sequence[PBLink], data: bytes | None) -> bytes:
    """The canonical dag-pb block of ``links`` (in the order given) and ``data``."""
    out = bytearray()
    for link in links:
        body = bytes_field(1, link.cid.binary)
        if link.name is not None:
            body += bytes_field(2, link.name)
        if link.tsize is not None:
            body += varint_field(3, link.tsize)
        out += bytes_field(2, body)
    if data is not None:
        out += bytes_field(1, data)
    return bytes(out)


def decode_node(block: bytes, cid: Cid) -> PBNode:
    """The node in ``block``; raises :class:`ContentError` naming ``cid`` if it is not
    canonical dag-pb (unknown fields, Data before a link or twice, a link without Hash,
    link fields out of order, an unparsable link CID)."""
    what = f"dag-pb block {cid}"
    links: list[PBLink] = []
    data: bytes | None = None
    for number, value in iter_fields(block, what, _NODE_FIELDS):
        if data is not None:
            raise ContentError(f"{what}: a field follows Data")
        assert isinstance(value, bytes)  # both fields are length-delimited
        if number == 1:
            data = value
        else:
            links.append(_decode_link(value, f"{what} link {len(links)}"))
    return PBNode(tuple(links), data)


def _decode_link(buf: bytes, what: str) -> PBLink:
    fields: dict[int, int | bytes] = {}
    for number, value in iter_fields(buf, what, _LINK_FIELDS):
        if fields and number <= max(fields):
            raise ContentError(f"{what}: field {number} out of order or repeated")
        fields[number] = value
    hash_ = fields.get(1)
    if not isinstance(hash_, bytes):
        raise ContentError(f"{what}: no Hash")
    name = fields.get(2)
    tsize = fields.get(3)
    assert name is None or isinstance(name, bytes)
    assert tsize is None or isinstance(tsize, int)
    return PBLink(parse_cid(hash_), name, tsize)
