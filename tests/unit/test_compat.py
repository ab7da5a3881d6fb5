"""node.p2p.compat: the pin check, and the patches it applies to py-libp2p.

The patches are process-wide: every test here runs under ``libp2p_patches_undone``
(``tests/conftest.py``), which puts py-libp2p back as it was afterwards, so no other test
finds it patched or not depending on whether these ran first."""

from __future__ import annotations

import libp2p.network.swarm
import pytest
import trio
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.stream.net_stream import NetStream
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from node.p2p import compat
from profiles.locks import REGISTRY, TrioLock
from tests.conftest import undo_libp2p_patches

pytestmark = pytest.mark.usefixtures("libp2p_patches_undone")


class FakeSecuredConn:
    """Only what Yamux's constructor reads."""

    is_initiator = True


def test_the_installed_libp2p_is_the_pinned_one_and_has_every_name() -> None:
    compat.check()  # raises on any mismatch


def test_a_moved_pin_fails_naming_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "installed_version", lambda: "0.9.0")
    with pytest.raises(compat.Libp2pMismatch, match=r"libp2p 0\.9\.0 is installed, not 0\.8\.1"):
        compat.check()


def test_a_missing_private_name_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(SecureSession, "_reset_internal_buffer")
    with pytest.raises(compat.Libp2pMismatch, match=r"SecureSession\._reset_internal_buffer"):
        compat.check()


def test_apply_patches_once() -> None:
    compat.apply()
    compat.apply()  # idempotent: one wrapper, not two
    assert libp2p.network.swarm._HAPPY_EYEBALLS_DELAY == 0.0
    assert SecureSession._drain is compat._drain_without_views
    assert AutoConnector.maybe_connect is compat._no_auto_connect
    assert Yamux.__init__.__wrapped__.__qualname__ == "Yamux.__init__"  # type: ignore[attr-defined]


def test_what_apply_patches_is_undone_after_the_block() -> None:
    originals = (
        libp2p.network.swarm._HAPPY_EYEBALLS_DELAY,
        SecureSession.__dict__["_drain"],
        AutoConnector.__dict__["maybe_connect"],
        Yamux.__dict__["__init__"],
        compat._applied,
    )
    with undo_libp2p_patches():
        compat._applied = False  # apply afresh, whether or not it was applied before
        compat.apply()
        assert SecureSession._drain is compat._drain_without_views
    assert (
        libp2p.network.swarm._HAPPY_EYEBALLS_DELAY,
        SecureSession.__dict__["_drain"],
        AutoConnector.__dict__["maybe_connect"],
        Yamux.__dict__["__init__"],
        compat._applied,
    ) == originals


def test_yamux_locks_made_after_apply_are_instrumented_and_work() -> None:
    compat.apply()
    muxer = Yamux(FakeSecuredConn(), peer_id=None)  # type: ignore[arg-type]
    stream = YamuxStream(1, muxer, is_initiator=True)
    for owner, attribute in ((muxer, "_write_lock"), (muxer, "streams_lock")):
        assert isinstance(getattr(owner, attribute), TrioLock), attribute
    assert isinstance(stream.window_lock, TrioLock)
    assert isinstance(stream.close_lock, TrioLock)

    async def use() -> None:
        async with muxer._write_lock:
            pass

    before = {s.name: s.acquisitions for s in REGISTRY.statistics()}
    trio.run(use)
    after = {s.name: s.acquisitions for s in REGISTRY.statistics()}
    assert after["libp2p.yamux.write"] == before.get("libp2p.yamux.write", 0) + 1


def test_a_net_stream_made_after_apply_has_an_instrumented_state_lock() -> None:
    compat.apply()
    muxer = Yamux(FakeSecuredConn(), peer_id=None)  # type: ignore[arg-type]
    stream = NetStream(YamuxStream(1, muxer, is_initiator=True), None, None)
    assert isinstance(stream._state_lock, TrioLock)
    assert set(compat.LIBP2P_LOCKS) == {Yamux, YamuxStream, NetStream}


def test_drain_without_views_reads_what_was_buffered() -> None:
    session = SecureSession.__new__(SecureSession)
    session._reset_internal_buffer()
    session.buf.write(b"hello world")
    session.high_watermark = 11
    assert compat._drain_without_views(session, 5) == b"hello"
    view = memoryview(b"x")  # a view held elsewhere must not matter
    assert compat._drain_without_views(session, None) == b" world"
    assert session.low_watermark == session.high_watermark == 0
    view.release()
