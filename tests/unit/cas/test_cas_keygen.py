"""Bounded RSA key generation: killable processes, a time budget, a cap on requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cloister import errors
from cloister.cas._keygen import ClientGone, KeyPool, request_scope


@pytest.fixture
def pool() -> Iterator[KeyPool]:
    keys = KeyPool(processes=1, budget=30, max_requests=2)
    yield keys
    keys.close()


def test_rsa_keys_come_from_the_pool_and_ec_keys_inline(pool: KeyPool) -> None:
    with request_scope():
        assert isinstance(pool.make_key("RSA-2048"), rsa.RSAPrivateKey)
        assert isinstance(pool.make_key("P-256"), ec.EllipticCurvePrivateKey)
    assert isinstance(pool.make_key("RSA-2048"), rsa.RSAPrivateKey)  # no scope: unbounded


def test_a_client_hanging_up_stops_its_key_generation_at_once(pool: KeyPool) -> None:
    gone = threading.Event()
    threading.Timer(0.5, gone.set).start()
    started = time.monotonic()
    with pytest.raises(ClientGone), request_scope(gone.is_set):
        for _ in range(200):  # far more work than 0.5 s
            pool.make_key("RSA-3072")
    assert time.monotonic() - started < 2.0, "key generation went on after the hang-up"
    with request_scope():  # the pool still works: the killed process was replaced
        assert isinstance(pool.make_key("RSA-2048"), rsa.RSAPrivateKey)


def test_the_time_budget_ends_a_request(pool: KeyPool) -> None:
    pool.budget = 0.3
    with pytest.raises(errors.Overloaded, match="keygen_budget"), request_scope():
        for _ in range(200):
            pool.make_key("RSA-3072")


def test_requests_at_once_are_capped(pool: KeyPool) -> None:
    hold = threading.Event()

    def busy() -> None:
        with request_scope(hold.is_set), pytest.raises(ClientGone):
            for _ in range(200):
                pool.make_key("RSA-3072")

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    try:
        with pytest.raises(errors.Overloaded, match="max_keygen_requests") as caught, \
                request_scope():
            pool.make_key("RSA-2048")
        assert caught.value.retry_after
    finally:
        hold.set()
        for thread in threads:
            thread.join(timeout=10)
