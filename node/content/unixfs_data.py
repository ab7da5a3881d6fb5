"""Owns the UnixFS ``Data`` message that a dag-pb node carries in its Data field:
``Type = 1; Data = 2; filesize = 3; repeated blocksizes = 4`` (the HAMT, mode and
mtime fields 5 to 8 are accepted when read and never written).

Encoding matches go-unixfs and the JS importer byte for byte: fields in number
order, absent fields left out, ``blocksizes`` unpacked (one field per size).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.content.errors import ContentError
from node.content.protobuf import LEN, VARINT, bytes_field, iter_fields, varint_field
from node.content.varint import decode_varint

_FIELDS = {
    1: (VARINT,),  # Type
    2: (LEN,),  # Data
    3: (VARINT,),  # filesize
    4: (VARINT, LEN),  # blocksizes, unpacked as written, packed also read
    5: (VARINT,),  # hashType (HAMT)
    6: (VARINT,),  # fanout (HAMT)
    7: (VARINT,),  # mode
    8: (LEN,),  # mtime
}


class DataType(enum.IntEnum):
    """The UnixFS node types."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A UnixFS Data message; ``None`` marks a field that is absent."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()


def encode_data(message: UnixFSData) -> bytes:
    """The protobuf bytes of ``message``."""
    out = varint_field(1, message.type)
    if message.data is not None:
        out += bytes_field(2, message.data)
    if message.filesize is not None:
        out += varint_field(3, message.filesize)
    for size in message.blocksizes:
        out += varint_field(4, size)
    return out


def decode_data(buf: bytes, what: str) -> UnixFSData:
    """The message in ``buf``; raises :class:`ContentError` naming ``what`` if it is not
    a UnixFS Data message with a known Type."""
    type_: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, value in iter_fields(buf, what, _FIELDS):
        if number == 1:
            assert isinstance(value, int)
            type_ = value
        elif number == 2:
            assert isinstance(value, bytes)
            data = value
        elif number == 3:
            assert isinstance(value, int)
            filesize = value
        elif number == 4:
            blocksizes.extend(_packed(value, what) if isinstance(value, bytes) else (value,))
    if type_ is None:
        raise ContentError(f"{what}: UnixFS Data has no Type")
    try:
        kind = DataType(type_)
    except ValueError:
        raise ContentError(f"{what}: unknown UnixFS Type {type_}") from None
    return UnixFSData(kind, data, filesize, tuple(blocksizes))


def _packed(buf: bytes, what: str) -> list[int]:
    values = []
    pos = 0
    while pos < len(buf):
        value, pos = decode_varint(buf, pos, what)
        values.append(value)
    return values
