"""Sealing values to a peer id (node.sealing), with real node keys from node.p2p.identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import create_new_key_pair as secp256k1_key_pair
from libp2p.peer.id import ID

from node.p2p.identity import load_or_create_key, peer_id_of
from node.sealing import SealError, Unsealer, seal


@dataclass(frozen=True)
class Node:
    key: KeyPair
    peer_id: str
    unsealer: Unsealer


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """One real node identity, module-scoped so the hypothesis test may use it."""
    key = load_or_create_key(tmp_path_factory.mktemp("requester"))
    return Node(key, peer_id_of(key), Unsealer(key))


def test_round_trip_with_a_key_loaded_from_disk(tmp_path: Path) -> None:
    created = load_or_create_key(tmp_path)
    sealed = seal(peer_id_of(created), b"result hash")
    # The key as a restarted node has it: read back from its 32-byte seed file.
    reloaded = load_or_create_key(tmp_path)
    assert Unsealer(reloaded).open(sealed) == b"result hash"
    assert Unsealer(created).open(sealed) == b"result hash"


def test_sealed_value_hides_the_plaintext(node: Node) -> None:
    plaintext = b"bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    sealed = seal(node.peer_id, plaintext)
    assert plaintext not in sealed
    assert len(sealed) == len(plaintext) + 48


def test_another_node_cannot_open_it(node: Node, tmp_path: Path) -> None:
    other = load_or_create_key(tmp_path / "other")
    sealed = seal(node.peer_id, b"for the requester only")
    with pytest.raises(SealError, match="not sealed to this node's key"):
        Unsealer(other).open(sealed)


def test_every_tampered_byte_is_detected(node: Node) -> None:
    sealed = seal(node.peer_id, b"0123456789")
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(SealError):
            node.unsealer.open(bytes(tampered))


@pytest.mark.parametrize("sealed", [b"", b"short", bytes(47), bytes(48), bytes(100)])
def test_malformed_sealed_values_raise_seal_error(node: Node, sealed: bytes) -> None:
    with pytest.raises(SealError):
        node.unsealer.open(sealed)


def test_truncated_and_extended_values_raise_seal_error(node: Node) -> None:
    sealed = seal(node.peer_id, b"payload")
    with pytest.raises(SealError):
        node.unsealer.open(sealed[:-1])
    with pytest.raises(SealError):
        node.unsealer.open(sealed + b"\0")


def test_two_seals_of_the_same_plaintext_differ(node: Node) -> None:
    first, second = seal(node.peer_id, b"same"), seal(node.peer_id, b"same")
    assert first != second
    assert node.unsealer.open(first) == node.unsealer.open(second) == b"same"


@pytest.mark.parametrize(
    "peer_id",
    [
        "",
        "not a peer id",
        "0OIl",  # not base58
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # sha2-256 id: no key inside
        "12D3KooW",  # truncated identity multihash
    ],
)
def test_garbage_peer_ids_raise_seal_error(peer_id: str) -> None:
    with pytest.raises(SealError, match="peer id"):
        seal(peer_id, b"x")


def test_peer_id_with_trailing_bytes_is_refused(node: Node) -> None:
    extended = ID(ID.from_base58(node.peer_id).to_bytes() + b"\0").to_base58()
    with pytest.raises(SealError, match="peer id"):
        seal(extended, b"x")


def test_a_non_ed25519_identity_cannot_be_sealed_to() -> None:
    peer_id = ID.from_pubkey(secp256k1_key_pair().public_key).to_base58()
    with pytest.raises(SealError, match="Secp256k1"):
        seal(peer_id, b"x")


def test_unsealer_refuses_a_non_ed25519_key_pair() -> None:
    with pytest.raises(SealError, match="ed25519 only"):
        Unsealer(secp256k1_key_pair())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_any_plaintext_round_trips(node: Node, plaintext: bytes) -> None:
    assert node.unsealer.open(seal(node.peer_id, plaintext)) == plaintext
