"""Owns content identifiers: :class:`Cid`, made from a block, parsed from text or
bytes, printed as kubo prints it, and checked against a block.

Only sha2-256 CIDs exist here (what kubo makes by default). CIDv1 text is multibase
base32 (``bafy...`` for dag-pb, ``bafk...`` for raw); CIDv0 (``Qm...``, base58btc,
always dag-pb) is parsed too, so links inside older trees can be followed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from node.content.errors import ContentError
from node.content.varint import decode_varint, encode_varint

RAW = 0x55
DAG_PB = 0x70
CODECS = {RAW: "raw", DAG_PB: "dag-pb"}

_SHA2_256 = 0x12
_DIGEST_LEN = 32
_MULTIHASH_PREFIX = bytes((_SHA2_256, _DIGEST_LEN))
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class Cid:
    """A sha2-256 CID: version 0 or 1, a codec (:data:`RAW` or :data:`DAG_PB`), a digest.

    Equal CIDs are equal objects and hash alike, so a ``Cid`` can key a blockstore.
    ``str(cid)`` is :attr:`text`.
    """

    version: int
    codec: int
    digest: bytes

    @classmethod
    def of(cls, codec: int, block: bytes) -> Cid:
        """The CIDv1 of ``block`` under ``codec``."""
        return cls(1, codec, hashlib.sha256(block).digest())

    @property
    def binary(self) -> bytes:
        """The binary form, as dag-pb links and bitswap carry it."""
        multihash = _MULTIHASH_PREFIX + self.digest
        if self.version == 0:
            return multihash
        return encode_varint(1) + encode_varint(self.codec) + multihash

    @property
    def text(self) -> str:
        """The text form kubo prints: base32 ``b...`` for v1, base58btc ``Qm...`` for v0."""
        if self.version == 0:
            return _base58_encode(self.binary)
        return "b" + base64.b32encode(self.binary).decode("ascii").lower().rstrip("=")

    def verify(self, block: bytes) -> None:
        """Return if ``block`` hashes to this CID; raise :class:`ContentError` naming it if not."""
        if hashlib.sha256(block).digest() != self.digest:
            raise ContentError(f"block {self} ({len(block)} bytes) does not hash to its CID")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cid({self.text!r})"


def parse_cid(value: Cid | str | bytes) -> Cid:
    """A :class:`Cid` from a ``Cid``, its text or its binary form.

    Raises :class:`ContentError` naming the input if it is not a sha2-256 CIDv0 or
    CIDv1 of a known codec in canonical form.
    """
    if isinstance(value, Cid):
        return value
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _parse_binary(bytes(value), f"CID {bytes(value).hex()}")
    raise ContentError(f"not a CID: {value!r}")


def _parse_text(text: str) -> Cid:
    what = f"CID {text!r}"
    if text.startswith("Qm"):
        cid = _parse_binary(_base58_decode(text, what), what)
    elif text.startswith("b"):
        body = text[1:].upper()
        try:
            binary = base64.b32decode(body + "=" * (-len(body) % 8))
        except (binascii.Error, ValueError) as exc:
            raise ContentError(f"{what}: not base32") from exc
        cid = _parse_binary(binary, what)
    else:
        raise ContentError(f"{what}: only base32 CIDv1 (b...) and CIDv0 (Qm...) are supported")
    if cid.text != text:
        raise ContentError(f"{what}: not canonical (expected {cid.text!r})")
    return cid


def _parse_binary(binary: bytes, what: str) -> Cid:
    if len(binary) == 2 + _DIGEST_LEN and binary.startswith(_MULTIHASH_PREFIX):
        return Cid(0, DAG_PB, binary[2:])
    version, pos = decode_varint(binary, 0, what)
    if version != 1:
        raise ContentError(f"{what}: CID version {version} is not supported")
    codec, pos = decode_varint(binary, pos, what)
    if codec not in CODECS:
        raise ContentError(f"{what}: codec 0x{codec:x} is not supported (raw and dag-pb are)")
    hash_code, pos = decode_varint(binary, pos, what)
    length, pos = decode_varint(binary, pos, what)
    if hash_code != _SHA2_256 or length != _DIGEST_LEN:
        raise ContentError(f"{what}: only sha2-256 multihashes are supported")
    digest = binary[pos:]
    if len(digest) != _DIGEST_LEN:
        raise ContentError(f"{what}: digest is {len(digest)} bytes, not {_DIGEST_LEN}")
    return Cid(1, codec, digest)


def _base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, digit = divmod(number, 58)
        out.append(_BASE58[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def _base58_decode(text: str, what: str) -> bytes:
    number = 0
    for char in text:
        digit = _BASE58.find(char)
        if digit < 0:
            raise ContentError(f"{what}: not base58btc")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")
