"""Cryptographic primitives of the file shield.

Invariants:
- every encrypted file has its own random key; the nonce of a chunk is
  ``stream id (4 bytes) ‖ chunk index (8 bytes)``, so no (key, nonce) pair is
  ever used twice (stream 0 = the file, stream 1 = its compiled code);
- the associated data of a chunk binds the file's logical path, the stream,
  the chunk index and whether it is the last chunk, so a chunk cannot be
  moved to another file or position and a file cannot be cut short at a
  chunk boundary without detection;
- the manifest is AES-256-GCM encrypted under the fspf key with its header as
  associated data; its 16-byte GCM tag is the identity of the tree's state.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TAG_LEN = 16
NONCE_LEN = 12
STREAM_DATA = 0
STREAM_CODE = 1
_AAD_PREFIX = b"cloister-fspf-chunk-v1\x00"


def new_key(length: int = 32) -> bytes:
    """A fresh random AES key of ``length`` bytes (16, 24 or 32)."""
    return os.urandom(length)


def chunk_count(size: int, chunk: int) -> int:
    """Number of chunks of a ``size``-byte file; an empty file has one empty chunk."""
    return max(1, -(-size // chunk))


def _nonce(stream: int, index: int) -> bytes:
    return struct.pack(">IQ", stream, index)


def _aad(path: str, stream: int, index: int, last: bool) -> bytes:
    return _AAD_PREFIX + path.encode() + struct.pack(">BIQ?", 0, stream, index, last)


def encrypt_stream(key: bytes, path: str, stream: int, data: bytes, chunk: int) -> bytes:
    """Encrypt ``data`` as chunks ``ciphertext ‖ tag``, concatenated."""
    aead = AESGCM(key)
    count = chunk_count(len(data), chunk)
    parts = []
    for index in range(count):
        piece = data[index * chunk : (index + 1) * chunk]
        aad = _aad(path, stream, index, index == count - 1)
        parts.append(aead.encrypt(_nonce(stream, index), piece, aad))
    return b"".join(parts)


def decrypt_chunk(
    key: bytes, path: str, blob: bytes, *, stream: int, index: int, last: bool
) -> bytes | None:
    """Plaintext of one chunk, or ``None`` when it fails authentication."""
    try:
        return AESGCM(key).decrypt(_nonce(stream, index), blob, _aad(path, stream, index, last))
    except InvalidTag:
        return None


def chunk_digests(data: bytes, chunk: int) -> list[str]:
    """SHA-256 (hex) of every chunk of ``data`` (authenticated files)."""
    count = chunk_count(len(data), chunk)
    return [hashlib.sha256(data[i * chunk : (i + 1) * chunk]).hexdigest() for i in range(count)]


def seal_blob(key: bytes, header: bytes, plaintext: bytes) -> bytes:
    """``nonce ‖ ciphertext ‖ tag`` of ``plaintext`` with ``header`` as associated data."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, header)


def open_blob(key: bytes, header: bytes, blob: bytes) -> bytes | None:
    """Inverse of :func:`seal_blob`; ``None`` when the key is wrong or the blob altered."""
    if len(blob) < NONCE_LEN + TAG_LEN:
        return None
    try:
        return AESGCM(key).decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], header)
    except InvalidTag:
        return None


TAG_DOMAIN = b"cloister-fspf-tag-v1\0"


def state_tag(content: bytes) -> bytes:
    """The identity of a protection file's state: SHA-256 over the whole file, 16 bytes.

    Not the GCM tag: with the key and nonce known, a GCM tag is an affine function of
    the plaintext, so anyone holding ``fspf_key`` could craft another manifest with the
    same tag.  A hash commitment cannot be matched without a second preimage.
    """
    return hashlib.sha256(TAG_DOMAIN + content).digest()[:TAG_LEN]
