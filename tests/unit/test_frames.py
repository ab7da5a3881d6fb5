"""node.p2p.frames: the warm streams' frame codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.p2p.frames import (
    HEADER,
    MAX_REQUEST_ID,
    Frame,
    FrameDecoder,
    FrameError,
    Kind,
    encode_frame,
)

MAX_PAYLOAD = 4096

frames = st.builds(
    Frame,
    kind=st.sampled_from(Kind),
    request_id=st.integers(0, MAX_REQUEST_ID),
    payload=st.binary(max_size=300),
)


def encode_all(items: list[Frame]) -> bytes:
    return b"".join(encode_frame(f.kind, f.request_id, f.payload) for f in items)


@given(st.lists(frames, max_size=20), st.data())
def test_frames_round_trip_however_the_bytes_are_cut(
    items: list[Frame], data: st.DataObject
) -> None:
    wire = encode_all(items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    decoder = FrameDecoder(MAX_PAYLOAD)
    got: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        got += decoder.feed(wire[start:end])
    assert got == items
    assert decoder.buffered == 0


@given(st.lists(frames, min_size=1, max_size=5), st.integers(1, HEADER.size + 10))
def test_a_frame_cut_short_stays_buffered(items: list[Frame], missing: int) -> None:
    wire = encode_all(items)
    missing = min(missing, len(wire))
    decoder = FrameDecoder(MAX_PAYLOAD)
    decoded = decoder.feed(wire[: len(wire) - missing])
    assert decoded == items[: len(decoded)] and len(decoded) < len(items)
    assert decoder.feed(wire[len(wire) - missing :]) == items[len(decoded) :]


@given(st.integers(0, 255).filter(lambda k: k not in (1, 2)), st.binary(max_size=64))
def test_an_unknown_kind_is_garbage_for_good(kind: int, tail: bytes) -> None:
    decoder = FrameDecoder(MAX_PAYLOAD)
    with pytest.raises(FrameError, match=f"kind {kind}"):
        decoder.feed(HEADER.pack(3, kind, 7) + b"abc" + tail)
    with pytest.raises(FrameError, match="unusable"):
        decoder.feed(encode_frame(Kind.REQUEST, 1, b"fine"))


@given(st.integers(MAX_PAYLOAD + 1, 2**32 - 1))
def test_an_oversized_frame_is_refused_from_its_header_alone(length: int) -> None:
    decoder = FrameDecoder(MAX_PAYLOAD)
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(HEADER.pack(length, Kind.REPLY, 1))


@given(st.binary(min_size=HEADER.size, max_size=200))
def test_random_bytes_decode_to_frames_or_raise(garbage: bytes) -> None:
    decoder = FrameDecoder(MAX_PAYLOAD)
    try:
        for frame in decoder.feed(garbage):
            assert frame.kind in (Kind.REQUEST, Kind.REPLY)
            assert len(frame.payload) <= MAX_PAYLOAD
    except FrameError:
        pass


def test_a_request_id_beyond_u32_is_refused() -> None:
    with pytest.raises(FrameError, match="u32"):
        encode_frame(Kind.REQUEST, MAX_REQUEST_ID + 1, b"")
    with pytest.raises(FrameError, match="u32"):
        encode_frame(Kind.REQUEST, -1, b"")
