"""The second factors and singleton leases of SCONE sessions: pure checks and store claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.cas import sealed_sqlite
from cloister.cas._service_gates import Gates, check_factors, split_otp, totp
from cloister.policy import load_session

# RFC 6238 appendix B: the SHA-1 key, T = 59 s → 94287082 (8 digits), so 287082 in 6
RFC_KEY = b"12345678901234567890"
OTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of RFC_KEY
M = "a" * 64


def _session(security: str = "", service: str = "") -> object:
    return load_session(f"""\
name: s
version: "0.3.10"
services:
  - name: app
    mrenclaves: [{M}]
{service}security:
  attestation:
    tolerate: [debug-mode]
{security}""")


def _check(otp: str | None, now: float, token: str | None = None, **kw: str) -> list[str]:
    session = _session(**kw)
    service = session.services[0]  # type: ignore[attr-defined]
    secret = service.one_time_password_shared_secret or (
        session.security.attestation.one_time_password_shared_secret)  # type: ignore
    return check_factors(service=service, session=session, otp_secret=secret,  # type: ignore
                         otp=otp, token=token, now=now).reasons


def test_totp_is_rfc_6238() -> None:
    assert totp(RFC_KEY, 59 // 30) == "287082"
    assert totp(RFC_KEY, 1111111109 // 30) == "081804"  # 07081804 in 8 digits


OTP = f"    one_time_password_shared_secret: {OTP_SECRET}\n"


def test_an_otp_counts_in_its_step_and_the_previous_one_only() -> None:
    assert _check("287082", 59, security=OTP) == []
    assert _check("287082", 75, security=OTP) == []  # one step later: clock skew
    assert "outside its 30-second window" in _check("287082", 95, security=OTP)[0]
    assert "outside its 30-second window" in _check("000000", 59, security=OTP)[0]
    assert "requires a one-time password" in _check(None, 59, security=OTP)[0]


def test_a_services_own_otp_secret_wins() -> None:
    other = "    one_time_password_shared_secret: " + "A" * 32 + "\n"
    assert _check("287082", 59, security=other, service=OTP) == []


def test_an_otp_where_none_is_configured_is_refused() -> None:
    assert "takes no one-time password" in _check("123456", 59)[0]


def test_the_access_token_must_be_presented_and_equal() -> None:
    token = "  service_access_token: j765WyMWTKksiqWbBuuc\n"
    assert "requires a service access token" in _check(None, 0, security=token)[0]
    assert "is wrong" in _check(None, 0, "j765WyMWTKksiqWbBuuX", security=token)[0]
    assert _check(None, 0, "j765WyMWTKksiqWbBuuc", security=token) == []


def test_split_otp() -> None:
    assert split_otp("ns/s/app@123456") == ("ns/s/app", "123456")
    assert split_otp("s/app") == ("s/app", None)


@pytest.fixture
def gates(tmp_path: Path) -> Gates:
    return Gates(sealed_sqlite(tmp_path / "cas.db", bytes(32)), lease=10)


def test_an_otp_step_is_claimed_once(gates: Gates) -> None:
    assert gates.claim_otp("s", "app", 1, now=30) == []
    assert "was used already" in gates.claim_otp("s", "app", 1, now=31)[0]
    assert gates.claim_otp("s", "other", 1, now=31) == []  # per service
    assert gates.claim_otp("s", "app", 2, now=61) == []


def test_a_lease_is_exclusive_renewable_and_lost_by_a_dead_holder(gates: Gates) -> None:
    first, reasons = gates.acquire("s", "app", now=0)
    assert first is not None and reasons == []
    second, reasons = gates.acquire("s", "app", now=5)
    assert second is None and "another attested instance holds it" in reasons[0]
    assert gates.renew("s", "app", first, now=8)  # held until 18 now
    assert gates.acquire("s", "app", now=15)[0] is None
    assert not gates.renew("s", "app", "not-the-holder", now=15)
    assert not gates.renew("s", "app", first, now=19)  # expired: renewing cannot revive it
    third, _ = gates.acquire("s", "app", now=19)  # the first stopped renewing: it expired
    assert third is not None
    assert not gates.renew("s", "app", first, now=20)  # the first lost it for good
    gates.release("s", "app", third)
    assert not gates.renew("s", "app", third, now=21)  # released: nothing to extend
    assert not gates.renew("s", "app", "anyone", now=21)  # a free lease is not taken so
    assert gates.acquire("s", "app", now=21)[0] is not None
