"""Owns sealing values to a peer: an anonymous box only the holder of the ed25519 key
inside a peer id can open.

A deterministic verifier needs proposals that no other node can read and copy
(README, verification), so a compute node seals its result hash to the requester. Every
ed25519 peer id embeds its public key (an identity multihash), so sealing needs
nothing but the peer id. Keys are converted from ed25519 to curve25519 and the
value goes into a libsodium sealed box (ephemeral sender key, X25519 + XSalsa20-
Poly1305): the sender is anonymous, every seal is randomised, and any change to
the sealed bytes makes opening fail.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from nacl.bindings import (
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from node.p2p.identity import NotEd25519, ed25519_public_key, ed25519_seed

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair


class SealError(ValueError):
    """A sealed value could not be opened (not for this key, tampered, or malformed), or a
    peer id has no ed25519 key."""


def seal(recipient_peer_id: str, plaintext: bytes) -> bytes:
    """``plaintext`` in an anonymous sealed box to the ed25519 key inside
    ``recipient_peer_id``; 48 bytes longer than ``plaintext``, different every call.

    Raises :class:`SealError` if the peer id is malformed or not an ed25519 identity.
    """
    return SealedBox(PublicKey(_curve_public_key(recipient_peer_id))).encrypt(bytes(plaintext))


class Unsealer:
    """Opens values sealed to one key pair; built once per node from its libp2p
    :class:`KeyPair` (the key is converted once, here).

    Raises :class:`SealError` if ``key_pair`` is not an ed25519 key pair.
    """

    __slots__ = ("_box",)

    def __init__(self, key_pair: KeyPair) -> None:
        try:
            seed = ed25519_seed(key_pair)
        except NotEd25519 as exc:
            raise SealError(f"cannot unseal with {exc}") from None
        # The curve25519 conversion wants libsodium's 64-byte secret key, which the
        # 32-byte seed expands to.
        _, secret = crypto_sign_seed_keypair(seed)
        self._box = SealedBox(PrivateKey(crypto_sign_ed25519_sk_to_curve25519(secret)))

    def open(self, sealed: bytes) -> bytes:
        """The plaintext inside ``sealed``.

        Raises :class:`SealError` if ``sealed`` was not sealed to this key, was changed
        after sealing, or is too short to be a sealed box.
        """
        try:
            return self._box.decrypt(bytes(sealed))
        except CryptoError as exc:
            raise SealError(
                f"cannot open a {len(sealed)}-byte sealed value: not sealed to this node's key,"
                " or altered"
            ) from exc


@functools.lru_cache(maxsize=1024)
def _curve_public_key(peer_id: str) -> bytes:
    # Cached: a requester is sealed to many times, and a failure (not cached) is cheap.
    try:
        key = ed25519_public_key(peer_id)
    except NotEd25519 as exc:
        raise SealError(str(exc)) from None
    try:
        return crypto_sign_ed25519_pk_to_curve25519(key)
    except CryptoError as exc:
        raise SealError(
            f"peer id {peer_id!r}: its ed25519 key is not a usable curve point"
        ) from exc
