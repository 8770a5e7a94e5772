"""Sealing the released configuration to the runtime's ephemeral key.

The runtime creates an X25519 key pair per launch (:func:`generate_ephemeral_key`),
keeps the private key in memory only, and binds the public key into its
evidence's report data.  The CAS encrypts the configuration to it with
:func:`seal_to`; only the process holding the private key can
:func:`open_sealed` it.

Blob format (version 1)::

    0x01 ‖ sender ephemeral X25519 public key (32) ‖ GCM nonce (12) ‖ ciphertext ‖ tag (16)

``key = HKDF-SHA256(ikm = X25519(sender, recipient), salt = none,
info = "cloister-seal-v1" ‖ 0x00 ‖ sender public ‖ recipient public, 32 bytes)``;
AES-256-GCM with the blob header (version ‖ sender public) as associated
data.  A fresh sender key per blob makes every key single-use.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloister import errors

_VERSION = b"\x01"
_KEY_LEN = 32
_NONCE_LEN = 12
_TAG_LEN = 16
_INFO = b"cloister-seal-v1\0"
PUBLIC_KEY_BYTES = 32


def generate_ephemeral_key() -> X25519PrivateKey:
    """A fresh X25519 private key; keep it in memory, never serialise it."""
    return X25519PrivateKey.generate()


def public_key_bytes_of(private_key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key (what report data binds and the CAS seals to)."""
    return private_key.public_key().public_bytes_raw()


def _derive(shared: bytes, sender_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=_KEY_LEN, salt=None,
        info=_INFO + sender_pub + recipient_pub,
    ).derive(shared)


def seal_to(public_key_bytes: bytes, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` so only the holder of the X25519 private key can read it."""
    if len(public_key_bytes) != PUBLIC_KEY_BYTES:
        raise errors.RequestError(
            f"ephemeral public key is {len(public_key_bytes)} bytes, expected "
            f"{PUBLIC_KEY_BYTES} (raw X25519)"
        )
    sender = X25519PrivateKey.generate()
    sender_pub = public_key_bytes_of(sender)
    try:
        shared = sender.exchange(X25519PublicKey.from_public_bytes(public_key_bytes))
    except ValueError:  # a low-order point: no shared secret, refuse
        raise errors.RequestError("ephemeral public key is not a usable X25519 key") from None
    key = _derive(shared, sender_pub, public_key_bytes)
    nonce = os.urandom(_NONCE_LEN)
    header = _VERSION + sender_pub
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header)


def open_sealed(private_key: X25519PrivateKey, blob: bytes) -> bytes:
    """Decrypt a :func:`seal_to` blob; :class:`errors.IntegrityError` if it was altered."""
    head = 1 + PUBLIC_KEY_BYTES
    if len(blob) < head + _NONCE_LEN + _TAG_LEN or blob[:1] != _VERSION:
        raise errors.IntegrityError(
            "sealed configuration is truncated or of an unknown version",
            details=["the CAS and this runtime must both speak cloister-seal-v1"],
        )
    sender_pub = blob[1:head]
    nonce = blob[head:head + _NONCE_LEN]
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(sender_pub))
        key = _derive(shared, sender_pub, public_key_bytes_of(private_key))
        return AESGCM(key).decrypt(nonce, blob[head + _NONCE_LEN:], blob[:head])
    except (InvalidTag, ValueError):
        raise errors.IntegrityError(
            "sealed configuration failed its integrity check: it was altered or sealed "
            "to another key; nothing of it was used"
        ) from None
