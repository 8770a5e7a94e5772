"""Sealing to the ephemeral key: only its holder opens it; any alteration is detected."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.attest import generate_ephemeral_key, open_sealed, public_key_bytes_of, seal_to

CONFIG = b'{"environment": {"API_PASSWORD": "s3cret"}}'


def test_round_trip_and_fresh_sender_key() -> None:
    key = generate_ephemeral_key()
    public = public_key_bytes_of(key)
    assert len(public) == 32
    first, second = seal_to(public, CONFIG), seal_to(public, CONFIG)
    assert first != second and CONFIG not in first
    assert open_sealed(key, first) == open_sealed(key, second) == CONFIG
    assert open_sealed(key, seal_to(public, b"")) == b""


def test_another_key_cannot_open() -> None:
    blob = seal_to(public_key_bytes_of(generate_ephemeral_key()), CONFIG)
    with pytest.raises(errors.IntegrityError, match="another key"):
        open_sealed(generate_ephemeral_key(), blob)


def test_every_flipped_byte_is_detected() -> None:
    key = generate_ephemeral_key()
    blob = seal_to(public_key_bytes_of(key), CONFIG)
    for index in range(len(blob)):
        altered = bytearray(blob)
        altered[index] ^= 0x01
        with pytest.raises(errors.IntegrityError):
            open_sealed(key, bytes(altered))


def test_truncated_and_bad_keys() -> None:
    key = generate_ephemeral_key()
    blob = seal_to(public_key_bytes_of(key), CONFIG)
    with pytest.raises(errors.IntegrityError, match="truncated"):
        open_sealed(key, blob[:40])
    with pytest.raises(errors.RequestError, match="expected 32"):
        seal_to(b"short", CONFIG)
    with pytest.raises(errors.RequestError, match="not a usable X25519 key"):
        seal_to(bytes(32), CONFIG)  # low-order point: no shared secret
