"""tpm with a vendor AK chain: Google's real vTPM attestation (tests/data/vectors/gce-vtpm)
verifies to the pinned Google root, needing no platforms: pin; altered copies are refused."""

from __future__ import annotations

from datetime import UTC, datetime

from cloister.attest import VerifiedClaims
from cloister.attest.tpm import TpmVerifier
from cloister.attest.tpm import _vendor as vendor
from support import DATA

PB = DATA / "vectors" / "gce-vtpm" / "cos85-nonce9009.pb"
AT = datetime(2025, 6, 1, tzinfo=UTC)


def _verify(data: bytes, at: datetime = AT) -> VerifiedClaims | list[str]:
    return TpmVerifier().verify(data, expected_report_data=b"", now=at)


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


def test_gce_attestation_verifies_to_the_pinned_google_root() -> None:
    claims = _verify(PB.read_bytes())
    assert isinstance(claims, VerifiedClaims), claims
    assert claims.evidence_type == "tpm"
    assert claims.report_data == bytes.fromhex("9009")
    assert claims.requires_platform_pin is False  # the vendor chain is the trust anchor
    assert claims.type_claims["vendor_chain"] is True
    assert "tpm_ek_v1_cloud_host-signer" in claims.type_claims["ak_certificate_issuer"]
    assert sorted(claims.pcrs) == list(range(24))
    assert claims.pcrs[0].startswith("0f35c214608d93c7")


def test_flipped_bit_in_a_quote_signature() -> None:
    data = PB.read_bytes()
    parsed = vendor.parse_attestation(data)
    at = data.index(parsed.quotes[0].signature) + 40
    result = _verify(_flip(data, at))
    assert result == ["vTPM quote over the sha1 bank is not signed by the AK"]


def test_flipped_bit_in_a_quoted_structure() -> None:
    data = PB.read_bytes()
    parsed = vendor.parse_attestation(data)
    at = data.index(parsed.quotes[1].attest) + 60
    result = _verify(_flip(data, at))
    assert isinstance(result, list)
    assert "vTPM quote over the sha256 bank is not signed by the AK" in result


def test_flipped_bit_in_the_ak_certificate() -> None:
    data = PB.read_bytes()
    parsed = vendor.parse_attestation(data)
    at = data.index(parsed.ak_cert) + len(parsed.ak_cert) - 20  # its signature
    result = _verify(_flip(data, at))
    assert result == ["vTPM AK certificate does not chain to a pinned vendor root"]


def test_without_the_pinned_root_nothing_chains() -> None:
    result = vendor.verify_attestation(PB.read_bytes(), AT, [
        c for c in vendor.shipped_certificates()
        if vendor._x509.fingerprint(c) not in vendor.PINNED_ROOTS])
    assert result == ["vTPM AK certificate does not chain to a pinned vendor root"]


def test_ak_certificate_outside_its_validity() -> None:
    result = _verify(PB.read_bytes(), at=datetime(2060, 1, 1, tzinfo=UTC))
    assert isinstance(result, list) and "AK certificate" in result[0] and "expired" in result[0]


def test_the_shipped_certificates_are_read_once_and_cannot_be_changed_by_a_caller() -> None:
    first = vendor.shipped_certificates()
    assert first is vendor.shipped_certificates()  # no file read nor parse per quote
    assert isinstance(first, tuple) and first  # immutable: a caller cannot add a root
