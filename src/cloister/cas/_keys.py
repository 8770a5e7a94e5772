"""Master key and AES-256-GCM sealing of secret material at rest.

Invariants:
- the master key is 32 random bytes in a file of mode 0600, created with
  ``os.open(..., O_CREAT | O_EXCL, 0o600)`` so no umask can widen it;
- every sealed blob is ``version byte ‖ 12-byte random nonce ‖ ciphertext+tag``
  and is bound by its AAD to the session name, session hash and secret name,
  so a blob copied to another row fails to open;
- failures never carry key or plaintext bytes in their messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister import errors
from cloister._files import check_private_file, write_private_file

KEY_SIZE = 32
_NONCE_SIZE = 12
_FORMAT_V1 = b"\x01"

__all__ = ["KEY_SIZE", "Sealer", "check_private_file", "load_or_create_master_key",
           "secret_aad", "write_private_file"]


def load_or_create_master_key(path: Path, *, create: bool = True) -> bytes:
    """Return the 32-byte master key in ``path``, creating it (0600) if allowed and absent."""
    if not path.exists():
        if not create:
            raise errors.ConfigError(
                f"master key file {path} does not exist",
                details=["give an existing 32-byte key file or omit --master-key-file"],
            )
        write_private_file(path, os.urandom(KEY_SIZE))
    check_private_file(path)
    key = path.read_bytes()
    if len(key) != KEY_SIZE:
        raise errors.ConfigError(
            f"master key file {path} holds {len(key)} bytes, expected {KEY_SIZE}",
            details=["the file must contain exactly 32 raw random bytes (head -c 32 /dev/urandom)"],
        )
    return key


def secret_aad(session: str, session_hash: str, secret: str, creator_key_hash: str) -> bytes:
    """AAD binding a blob to its row and to the session's creator (who holds CREATOR
    rights): a store writer who changes the creator column makes the secrets unreadable.
    NUL separators make the encoding unambiguous."""
    return b"cloister-secret-v2\0" + b"\0".join(
        part.encode("utf-8") for part in (session, session_hash, secret, creator_key_hash)
    )


class Sealer:
    """AES-256-GCM under the master key.  Holds the key; never prints it."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise errors.ConfigError(f"master key must be {KEY_SIZE} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<master key hidden>)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + _NONCE_SIZE + 16 or blob[:1] != _FORMAT_V1:
            raise errors.StoreError("a stored secret blob is malformed")
        nonce = blob[1 : 1 + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_SIZE :], aad)
        except InvalidTag:
            raise errors.StoreError(
                "a stored secret failed authentication (wrong master key or tampered store)"
            ) from None
