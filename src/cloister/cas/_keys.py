"""Key files, and the first release's sealing (read only during ``migrate-state``).

Invariants:
- a key file is created with ``os.open(..., O_CREAT | O_EXCL, 0o600)`` so no
  umask can widen it, and refused when group or others can access it;
- :class:`LegacySealer` opens the blobs of a version-1 store (``version byte
  ‖ 12-byte nonce ‖ ciphertext+tag`` under ``STATE/master.key``); nothing new
  is sealed with it (see :mod:`cloister.cas._keyring`);
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
#: AAD of the version-1 store's ``meta.key_check`` row
LEGACY_KEY_CHECK_AAD = b"cloister-master-key-check"



def replace_private_file(path: Path, data: bytes) -> None:
    """Atomically (write, fsync, rename, fsync the directory) make ``path`` hold ``data``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    write_private_file(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_key_file(path: Path) -> bytes:
    """The 32 raw bytes of a key file (0600), with a clear error for anything else."""
    if not path.exists():
        raise errors.ConfigError(
            f"key file {path} does not exist",
            details=["give the key file this CAS was initialised with"],
        )
    check_private_file(path)
    key = path.read_bytes()
    if len(key) != KEY_SIZE:
        raise errors.ConfigError(
            f"key file {path} holds {len(key)} bytes, expected {KEY_SIZE}",
            details=["the file must contain exactly 32 raw random bytes (head -c 32 /dev/urandom)"],
        )
    return key


def shred(path: Path) -> None:
    """Overwrite a file with zeros, fsync, unlink (best effort against the file system;
    no guarantee against SSD remapping or older backups)."""
    if not path.exists():
        return
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, bytes(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


class LegacySealer:
    """AES-256-GCM under a version-1 ``master.key``.  Holds the key; never prints it."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise errors.ConfigError(f"master key must be {KEY_SIZE} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "LegacySealer(<master key hidden>)"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """A version-1 blob (tests build version-1 stores with it)."""
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
