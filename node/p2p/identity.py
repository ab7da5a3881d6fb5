"""A node's libp2p identity: the ed25519 key kept in its data dir (mode 0600), and the
raw ed25519 keys inside peer ids and key pairs (what :mod:`node.sealing` seals to)."""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

KEY_FILE = "node.key"
_SEED_BYTES = 32


class IdentityError(RuntimeError):
    """The key file exists but cannot be used; the message names the file."""


def load_or_create_key(data_dir: Path) -> KeyPair:
    """Load the node's key from ``data_dir``, creating it (0600) on first use."""
    path = data_dir / KEY_FILE
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != _SEED_BYTES:
            raise IdentityError(
                f"{path}: expected a {_SEED_BYTES}-byte ed25519 seed, found {len(seed)} bytes;"
                " move it away to give the node a new identity"
            )
        return create_new_key_pair(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    key_pair = create_new_key_pair()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(key_pair.private_key.impl))  # the 32-byte seed
    return key_pair


def peer_id_of(key_pair: KeyPair) -> str:
    return ID.from_pubkey(key_pair.public_key).to_base58()


class NotEd25519(ValueError):
    """A peer id or key pair that holds no usable ed25519 key; the text says why."""


def ed25519_public_key(peer_id: str) -> bytes:
    """The 32-byte ed25519 public key a peer id embeds (an identity multihash).

    Raises :class:`NotEd25519` if ``peer_id`` is not base58, embeds no key, holds
    another kind of key, or is not the canonical id of the key it holds.
    """
    what = f"peer id {peer_id!r}"
    try:
        pid = ID.from_base58(peer_id)
    except ValueError as exc:
        raise NotEd25519(f"{what}: not base58") from exc
    key = pid.extract_public_key()
    if key is None:
        raise NotEd25519(f"{what}: does not embed a public key (not an identity multihash)")
    if not isinstance(key, Ed25519PublicKey):
        raise NotEd25519(f"{what}: holds a {key.get_type().name} key; only ed25519 can be used")
    # The key must re-encode to exactly this id, so trailing or non-canonical bytes are refused.
    if ID.from_pubkey(key).to_bytes() != pid.to_bytes() or pid.to_base58() != peer_id:
        raise NotEd25519(f"{what}: not the canonical id of the key it holds")
    return key.to_bytes()


def ed25519_seed(key_pair: KeyPair) -> bytes:
    """The 32-byte ed25519 seed of ``key_pair``; raises :class:`NotEd25519` for
    another kind of key."""
    private = key_pair.private_key
    if not isinstance(private, Ed25519PrivateKey):
        raise NotEd25519(f"a {private.get_type().name} key; ed25519 only")
    return bytes(private.impl)
