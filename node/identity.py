"""A node's libp2p identity: the ed25519 key kept in its data dir (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
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
