"""The CAS limits: one dataclass, overridden by name, and per-client token buckets."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.cas import Limits
from cloister.cas._limits import with_overrides
from cloister.cas._ratelimit import RateLimiter, client_key, retry_after


def test_overrides_by_name_with_types() -> None:
    limits = with_overrides(Limits(), ["nonce_rate=7.5", "workers=8", "max-body=2_048"])
    assert (limits.nonce_rate, limits.workers, limits.max_body) == (7.5, 8, 2048)
    assert Limits().nonce_rate == 50.0  # the defaults are untouched


@pytest.mark.parametrize(("pair", "says"), [
    ("nonce_ratee=1", "unknown CAS limit"),
    ("workers=many", "needs an integer"),
    ("workers", "unknown CAS limit"),
    ("workers=0", "must be positive"),
])
def test_a_bad_override_is_refused_naming_it(pair: str, says: str) -> None:
    with pytest.raises(errors.ConfigError, match=says):
        with_overrides(Limits(), [pair])


def test_bucket_allows_the_burst_then_paces_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5) and retry_after(wait) == 1
    assert limiter.take("b") == 0.0, "one client's use must not limit another"
    now[0] += 0.5
    assert limiter.take("a") == 0.0


def test_the_bucket_table_is_bounded() -> None:
    limiter = RateLimiter(1.0, 1, size=10)
    for i in range(100):
        limiter.take(str(i))
    assert len(limiter._buckets) == 10


def test_a_client_is_an_ipv4_address_or_an_ipv6_slash_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
