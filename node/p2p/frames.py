"""The frames of a warm stream (:mod:`node.p2p.streams`): requests and their replies.

A frame is a 9-byte header, then its payload::

    u32 payload length | u8 kind (1 request, 2 reply) | u32 request id | payload

all big-endian. A reply carries the id of the request it answers, so many
requests can be in flight on one stream and their replies come back in any order.
Pure code: no I/O, no libp2p.

:class:`FrameDecoder` takes the bytes of a stream in whatever pieces they arrive
and gives back whole frames; anything that is not a frame (an unknown kind, a
payload over the limit) raises :class:`FrameError`, after which the stream can
only be dropped: there is no way to find the next frame boundary.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER = struct.Struct(">IBI")
MAX_REQUEST_ID = 0xFFFF_FFFF
DEFAULT_MAX_PAYLOAD = 1 << 20


class FrameError(ValueError):
    """Bytes that are not a frame; the text says what is wrong."""


class Kind(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    request_id: int
    payload: bytes


def encode_frame(kind: Kind, request_id: int, payload: bytes) -> bytes:
    """One frame's bytes. Raises :class:`FrameError` for an id out of u32 range."""
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise FrameError(f"request id {request_id} is not a u32")
    return HEADER.pack(len(payload), kind, request_id) + payload


class FrameDecoder:
    """Whole frames out of a byte stream fed in arbitrary pieces.

    ``max_payload`` bounds one frame's payload, so a peer cannot make this buffer
    grow without bound. Not thread-safe.
    """

    __slots__ = ("_buffer", "_failed", "max_payload")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held that do not make a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes, in order.

        Raises :class:`FrameError` at the first bytes that are not a frame; every
        later call raises it too.
        """
        if self._failed:
            raise FrameError("an earlier frame was malformed: the stream is unusable")
        self._buffer += data
        frames: list[Frame] = []
        at = 0
        buffer = self._buffer
        while len(buffer) - at >= HEADER.size:
            length, kind, request_id = HEADER.unpack_from(buffer, at)
            if kind not in (Kind.REQUEST, Kind.REPLY):
                self._failed = True
                raise FrameError(f"frame kind {kind} is neither a request (1) nor a reply (2)")
            if length > self.max_payload:
                self._failed = True
                raise FrameError(f"frame of {length} bytes exceeds {self.max_payload}")
            end = at + HEADER.size + length
            if end > len(buffer):
                break
            frames.append(Frame(Kind(kind), request_id, bytes(buffer[at + HEADER.size : end])))
            at = end
        if at == len(buffer):
            self._buffer = bytearray()  # let go of the capacity an idle stream would keep
        elif at:
            del buffer[:at]
        return frames
