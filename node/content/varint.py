"""Owns the unsigned varint (LEB128) shared by protobuf fields and CIDs.

Decoding is strict: a varint must be minimal (no trailing zero byte groups) and fit
in 64 bits, as the multiformats unsigned-varint spec asks; content that breaks this
raises :class:`ContentError`.
"""

from __future__ import annotations

from node.content.errors import ContentError

_MAX_BYTES = 10  # 64 bits in 7-bit groups


def encode_varint(value: int) -> bytes:
    """The minimal varint of ``value``; raises ``ValueError`` if it is negative."""
    if value < 0:
        raise ValueError(f"varint of a negative number: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """The varint starting at ``buf[pos]`` and the position after it.

    Raises :class:`ContentError`, naming ``what``, if it is truncated, not minimal
    or wider than 64 bits.
    """
    value = 0
    for i in range(pos, min(pos + _MAX_BYTES, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << (7 * (i - pos))
        if byte < 0x80:
            if byte == 0 and i > pos:
                raise ContentError(f"{what}: varint is not minimal")
            if value >= 1 << 64:
                raise ContentError(f"{what}: varint wider than 64 bits")
            return value, i + 1
    raise ContentError(f"{what}: truncated varint")
