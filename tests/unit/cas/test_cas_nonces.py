"""Stateless attestation nonces: single use, age-checked, MACed, shared by replicas."""

from __future__ import annotations

from pathlib import Path

from cloister.cas import sealed_sqlite
from cloister.cas._nonces import NONCE_SIZE, REASON, MemorySpent, NonceIssuer, nonce_key


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_nonce_is_good_once() -> None:
    issuer = NonceIssuer(bytes(32), MemorySpent())
    nonce = issuer.issue()
    assert len(nonce) == NONCE_SIZE
    assert issuer.check(nonce) is True
    assert issuer.check(nonce) == REASON


def test_issuing_stores_nothing() -> None:
    spent = MemorySpent()
    issuer = NonceIssuer(bytes(32), spent)
    for _ in range(1000):
        issuer.issue()
    assert spent._spent == {}  # the point: issuing costs no state


def test_an_expired_nonce_is_refused_and_one_from_far_ahead_too() -> None:
    clock = Clock()
    issuer = NonceIssuer(bytes(32), MemorySpent(), lifetime=60, clock=clock)
    old = issuer.issue()
    clock.now += 61
    assert issuer.check(old) == REASON
    ahead = NonceIssuer(bytes(32), MemorySpent(), clock=lambda: clock.now + 30).issue()
    assert issuer.check(ahead) == REASON, "a nonce from 30 s in the future passed"
    skewed = NonceIssuer(bytes(32), MemorySpent(), clock=lambda: clock.now + 2).issue()
    assert issuer.check(skewed) is True, "a replica 2 s ahead was refused"


def test_a_forged_or_truncated_nonce_is_refused() -> None:
    issuer = NonceIssuer(bytes(32), MemorySpent())
    nonce = bytearray(issuer.issue())
    nonce[5] ^= 1  # another issue time under the same tag
    assert issuer.check(bytes(nonce)) is not True
    assert issuer.check(issuer.issue()[:-1]) is not True
    other = NonceIssuer(b"\1" * 32, MemorySpent()).issue()
    assert issuer.check(other) is not True, "a nonce under another key was accepted"


def test_replicas_sharing_a_store_accept_each_others_nonces_once(tmp_path: Path) -> None:
    master = b"\7" * 32
    store_a = sealed_sqlite(tmp_path / "cas.db", master)
    store_b = sealed_sqlite(tmp_path / "cas.db", master)
    try:
        a = NonceIssuer(nonce_key(store_a.keyring), store_a)
        b = NonceIssuer(nonce_key(store_b.keyring), store_b)
        nonce = a.issue()
        assert b.check(nonce) is True
        assert a.check(nonce) == REASON, "a nonce spent at one replica was reused"
    finally:
        store_a.close()
        store_b.close()


def test_the_nonce_key_is_derived_not_the_master_key(tmp_path: Path) -> None:
    master = b"\7" * 32
    store = sealed_sqlite(tmp_path / "cas.db", master)
    try:
        key = nonce_key(store.keyring)
        assert key != master and len(key) == 32 and key == nonce_key(store.keyring)
    finally:
        store.close()
