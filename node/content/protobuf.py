"""Owns the slice of the protobuf wire format that dag-pb and UnixFS use: varint and
length-delimited fields, written in the order the caller gives and read strictly.

Hand-written rather than generated so that the bytes are exactly the canonical ones
(dag-pb puts Links before Data, against protobuf's field-number order) and so that
every decoding failure is a :class:`ContentError`, never a library exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from node.content.errors import ContentError
from node.content.varint import decode_varint, encode_varint

VARINT = 0
LEN = 2


def varint_field(number: int, value: int) -> bytes:
    """Field ``number`` holding the unsigned integer ``value``."""
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (length-delimited)."""
    return encode_varint(number << 3 | LEN) + encode_varint(len(payload)) + payload


def iter_fields(
    buf: bytes, what: str, wire_types: Mapping[int, tuple[int, ...]]
) -> Iterator[tuple[int, int | bytes]]:
    """Each field of the message ``buf`` as ``(number, value)``, in order.

    ``value`` is an ``int`` for a varint field and ``bytes`` for a length-delimited
    one. ``wire_types`` maps each field number the message may hold to the wire types
    allowed for it. Raises :class:`ContentError` naming ``what`` on an unknown field,
    a wrong wire type, or a truncated message.
    """
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos, what)
        number, wire = key >> 3, key & 7
        if number not in wire_types:
            raise ContentError(f"{what}: unexpected field {number}")
        if wire not in wire_types[number]:
            raise ContentError(f"{what}: field {number} has wire type {wire}")
        if wire == VARINT:
            value, pos = decode_varint(buf, pos, what)
            yield number, value
            continue
        length, pos = decode_varint(buf, pos, what)
        if pos + length > len(buf):
            raise ContentError(f"{what}: field {number} runs past the end")
        yield number, buf[pos : pos + length]
        pos += length
