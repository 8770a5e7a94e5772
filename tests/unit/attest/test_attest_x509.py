"""Shared X.509 helpers: the memo of certificate loads and issuer checks answers for the
exact bytes only — a certificate with one bit changed is checked afresh and refused."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attest import _x509
from cloister.attest.sevsnp import _certs
from support import DATA

VCEK = DATA / "vectors" / "sev-snp" / "milan-v2-b" / "vcek.der"


def _flipped_signature(der: bytes) -> bytes:
    changed = bytearray(der)
    changed[-1] ^= 0x01  # the last byte belongs to the signature value
    return bytes(changed)


def test_a_remembered_issuer_check_holds_only_for_the_same_bytes() -> None:
    ask = _certs.shipped_roots()["milan"].issuers["vcek"]
    der = VCEK.read_bytes()
    vcek = _x509.load_certificate(der)
    assert vcek is not None and _x509.load_certificate(der) is vcek  # parsed once
    assert _x509.issued_by(vcek, ask) and _x509.issued_by(vcek, ask)  # the second remembered
    forged = _x509.load_certificate(_flipped_signature(der))
    assert forged is not None and forged != vcek
    assert not _x509.issued_by(forged, ask), "a changed signature must be checked and refused"
    assert not _x509.issued_by(vcek, vcek), "another issuer is another question"
    assert forged.public_bytes(Encoding.DER) == _flipped_signature(der)


def test_the_memo_is_bounded() -> None:
    der = VCEK.read_bytes()
    for n in range(_x509.MEMO_SIZE + 10):
        _x509.load_certificate(der + b"\0" * n)  # not a certificate: None, remembered too
    assert _x509._load.cache_info().currsize <= _x509.MEMO_SIZE
    assert _x509.issued_by.cache_info().maxsize == _x509.MEMO_SIZE
