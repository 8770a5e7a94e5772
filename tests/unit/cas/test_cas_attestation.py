"""The attestation endpoints' nonce cache: single use, bounded, and a flood is refused."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.cas._attestation import NonceCache


def test_a_nonce_is_good_once() -> None:
    cache = NonceCache()
    nonce = cache.issue()
    assert cache.consume(nonce) and not cache.consume(nonce)
    assert not cache.consume(bytes(32))


def test_an_expired_nonce_is_refused() -> None:
    cache = NonceCache(ttl=-1)
    assert not cache.consume(cache.issue())


def test_nonce_flood_is_refused_not_evicting_nonces_in_flight() -> None:
    cache = NonceCache(ttl=60, limit=3)
    first = cache.issue()
    cache.issue()
    cache.issue()
    with pytest.raises(errors.Overloaded, match="retry in a minute"):
        cache.issue()
    assert cache.consume(first)
    cache.issue()  # room again once one was used
