"""Stateless attestation nonces (as ACME's Replay-Nonce): issuing one stores nothing.

A nonce is ``0x01 ‖ issued (8 bytes, ms since the epoch) ‖ random (16) ‖ tag (16)``
with ``tag = HMAC-SHA256(key, "cloister-nonce-v1" ‖ the first 25 bytes)[:16]``.
The key is derived from the CAS master key (:func:`nonce_key`), so every CAS
replica sharing a store — and so the master key — accepts the nonces of the
others.

Checking one (:meth:`NonceIssuer.check`), in order:

1. the length and version byte;
2. the tag (constant-time compare);
3. the age: issued at most ``lifetime`` seconds ago, and not more than
   ``CLOCK_SKEW`` in the future (replicas' clocks differ a little);
4. single use: the nonce is entered in the *spent set*, which refuses a
   second entry.  The spent set holds a nonce only until it expires, and only
   nonces that passed 1-3 reach it, so it is bounded by the nonce rate limit
   times the lifetime.  :class:`MemorySpent` serves one process; the stores
   keep a shared one (``Store.spend_nonce``: one insert under a unique key).

The clock is an input (``now``), so this module does no I/O of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

_VERSION = b"\x01"
_DOMAIN = b"cloister-nonce-v1"
_BODY = 1 + 8 + 16
_TAG = 16
NONCE_SIZE = _BODY + _TAG
#: seconds a nonce may appear to come from the future (another replica's clock)
CLOCK_SKEW = 5.0

if TYPE_CHECKING:
    from cloister.cas._keyring import Keyring

REASON = "nonce is unknown, expired or already used: request a fresh nonce and attest again"


def nonce_key(keyring: Keyring) -> bytes:
    """The nonce MAC key, derived from the unsealed master key (its own purpose label), so
    every replica sharing the seal computes the same key."""
    return keyring.derive_key(b"cloister cas attestation nonce key v1")


class SpentSet(Protocol):
    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        """Enter ``nonce`` (kept until ``expires_at``); False if it was already there."""


class MemorySpent:
    """A spent set in this process only (for one CAS, or an app without a shared store)."""

    def __init__(self) -> None:
        self._spent: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def spend_nonce(self, nonce: bytes, expires_at: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            if now >= self._next_purge:
                self._spent = {n: t for n, t in self._spent.items() if t >= now}
                self._next_purge = now + 1.0
            if nonce in self._spent:
                return False
            self._spent[nonce] = expires_at
            return True


class NonceIssuer:
    """Issue and check nonces under ``key``; ``spent`` remembers used ones.

    Invariant: :meth:`check` accepts a nonce at most once, only one this key
    issued, and only within ``lifetime`` seconds of its issue.
    """

    def __init__(self, key: bytes, spent: SpentSet, *, lifetime: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._mac = hmac.new(key, _DOMAIN, hashlib.sha256)  # keyed once, copied per tag
        self._spent = spent
        self.lifetime = lifetime
        self._clock = clock

    def __repr__(self) -> str:
        return f"NonceIssuer(lifetime={self.lifetime}, <key hidden>)"

    def _tag(self, body: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(body)
        return mac.digest()[:_TAG]

    def issue(self) -> bytes:
        millis = int(self._clock() * 1000)
        body = _VERSION + struct.pack(">Q", millis) + secrets.token_bytes(16)
        return body + self._tag(body)

    def check(self, nonce: bytes) -> bool | str:
        """True, or why the nonce is refused (steps 1-4 of the module): one reason for
        every failure, so an anonymous caller learns nothing about the nonces."""
        # 1. shape
        if len(nonce) != NONCE_SIZE or nonce[:1] != _VERSION:
            return REASON
        body, tag = nonce[:_BODY], nonce[_BODY:]
        # 2. issued by a CAS holding this key
        if not hmac.compare_digest(tag, self._tag(body)):
            return REASON
        # 3. age
        issued = struct.unpack(">Q", body[1:9])[0] / 1000
        now = self._clock()
        if issued > now + CLOCK_SKEW or now - issued > self.lifetime:
            return REASON
        # 4. single use
        if not self._spent.spend_nonce(body, issued + self.lifetime + CLOCK_SKEW):
            return REASON
        return True


__all__ = ["NONCE_SIZE", "MemorySpent", "NonceIssuer", "SpentSet", "nonce_key"]
