"""Access-policy entries: CREATOR, ANY, NONE, PEM (by public key), key hash; unknown denies."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloister import errors
from cloister.cas import Caller, key_hash
from cloister.cas._access import is_allowed, require


def _cert(key: ec.EllipticCurvePrivateKey, cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


KEY = ec.generate_private_key(ec.SECP256R1())
CERT = _cert(KEY, "alice")
PEM = CERT.public_bytes(serialization.Encoding.PEM).decode()
ALICE = Caller(key_hash(CERT), PEM)
BOB = Caller("b" * 64, "")


@pytest.mark.parametrize(
    ("entries", "caller", "allowed"),
    [
        (("ANY",), BOB, True),
        (("NONE",), ALICE, False),
        (("CREATOR",), ALICE, True),
        (("CREATOR",), BOB, False),
        ((PEM,), ALICE, True),
        # a different certificate for the same key still matches: identity is the key
        ((_cert(KEY, "renamed").public_bytes(serialization.Encoding.PEM).decode(),), ALICE, True),
        ((PEM,), BOB, False),
        ((ALICE.key_hash.upper(),), ALICE, True),
        (("$$SCONE::acl$$",), ALICE, False),
        (("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----",), ALICE, False),
        ((), ALICE, False),
    ],
)
def test_entries(entries: tuple[str, ...], caller: Caller, allowed: bool) -> None:
    assert is_allowed(entries, caller, ALICE.key_hash) is allowed


def test_denial_names_the_reason() -> None:
    with pytest.raises(errors.AccessDenied) as info:
        require(("NONE",), ALICE, ALICE.key_hash, action="update", session="s")
    assert "NONE" in info.value.details[0]
    with pytest.raises(errors.AccessDenied) as info:
        require(("CREATOR",), BOB, ALICE.key_hash, action="read", session="s")
    assert BOB.key_hash in info.value.details[0]
