"""node.instrumentation: py-libp2p's locks become instrumented ones."""

from __future__ import annotations

import trio
from libp2p.network.stream.net_stream import NetStream
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from node.instrumentation import LIBP2P_LOCKS, instrument_libp2p_locks
from profiles.locks import REGISTRY, TrioLock


class FakeSecuredConn:
    """Only what Yamux's constructor reads."""

    is_initiator = True


def test_yamux_locks_made_after_install_are_instrumented_and_work() -> None:
    instrument_libp2p_locks()
    instrument_libp2p_locks()  # idempotent: one wrapper, not two
    muxer = Yamux(FakeSecuredConn(), peer_id=None)  # type: ignore[arg-type]
    stream = YamuxStream(1, muxer, is_initiator=True)
    for owner, attribute in ((muxer, "_write_lock"), (muxer, "streams_lock")):
        assert isinstance(getattr(owner, attribute), TrioLock), attribute
    assert isinstance(stream.window_lock, TrioLock)
    assert isinstance(stream.close_lock, TrioLock)
    assert Yamux.__init__.__wrapped__.__qualname__ == "Yamux.__init__"  # type: ignore[attr-defined]

    async def use() -> None:
        async with muxer._write_lock:
            pass

    before = {s.name: s.acquisitions for s in REGISTRY.statistics()}
    trio.run(use)
    after = {s.name: s.acquisitions for s in REGISTRY.statistics()}
    assert after["libp2p.yamux.write"] == before.get("libp2p.yamux.write", 0) + 1


def test_a_net_stream_made_after_install_has_an_instrumented_state_lock() -> None:
    instrument_libp2p_locks()
    muxer = Yamux(FakeSecuredConn(), peer_id=None)  # type: ignore[arg-type]
    stream = NetStream(YamuxStream(1, muxer, is_initiator=True), None, None)
    assert isinstance(stream._state_lock, TrioLock)
    assert set(LIBP2P_LOCKS) == {Yamux, YamuxStream, NetStream}
