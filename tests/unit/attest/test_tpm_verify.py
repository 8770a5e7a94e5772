"""The ``tpm`` verifier on quotes built here byte by byte (no TPM needed).

The structures follow TPM 2.0 Part 2 (TPMS_ATTEST, TPMT_SIGNATURE,
TPMT_PUBLIC); ``tests/integration/test_tpm_las.py`` checks the same verifier
against quotes a real (software) TPM produced.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from cloister import errors
from cloister.attest import (
    VERIFIERS,
    TpmVerifier,
    VerifiedClaims,
    _evidence,
    parse_pcrs,
    qualifying_data,
    simulation,
)
from cloister.attest.tpm import _format as fmt

M, TAG, RD = "ab" * 32, "12" * 16, "cd" * 32
ZERO = "00" * 32


def _2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def ak_public(key: ec.EllipticCurvePrivateKey, attributes: int = fmt.AK_REQUIRED_ATTRIBUTES
              | (1 << 6)) -> bytes:
    numbers = key.public_key().public_numbers()
    return (struct.pack(">HHI", fmt.TPM_ALG_ECC, fmt.TPM_ALG_SHA256, attributes) + _2b(b"")
            + struct.pack(">HHHHH", fmt.TPM_ALG_NULL, fmt.TPM_ALG_ECDSA, fmt.TPM_ALG_SHA256,
                          fmt.TPM_ECC_NIST_P256, fmt.TPM_ALG_NULL)
            + _2b(numbers.x.to_bytes(32, "big")) + _2b(numbers.y.to_bytes(32, "big")))


def attest(*, signer: bytes, extra: bytes, pcrs: tuple[int, ...], digest: bytes,
           magic: int = fmt.TPM_GENERATED_VALUE, type_: int = fmt.TPM_ST_ATTEST_QUOTE) -> bytes:
    bitmap = bytearray(3)
    for pcr in pcrs:
        bitmap[pcr // 8] |= 1 << (pcr % 8)
    return (struct.pack(">IH", magic, type_) + _2b(signer) + _2b(extra)
            + struct.pack(">QIIB", 1234, 2, 3, 1) + struct.pack(">Q", 0x2011)
            + struct.pack(">IHB", 1, fmt.TPM_ALG_SHA256, 3) + bytes(bitmap) + _2b(digest))


def signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return (struct.pack(">HH", fmt.TPM_ALG_ECDSA, fmt.TPM_ALG_SHA256)
            + _2b(r.to_bytes(32, "big")) + _2b(s.to_bytes(32, "big")))


@dataclass
class Quote:
    """An honest quote; tests change one input each."""

    key: ec.EllipticCurvePrivateKey
    signing_key: ec.EllipticCurvePrivateKey | None = None
    attributes: int = fmt.AK_REQUIRED_ATTRIBUTES | (1 << 6)
    pcr_values: dict[int, str] | None = None
    extra: bytes | None = None
    magic: int = fmt.TPM_GENERATED_VALUE
    type_: int = fmt.TPM_ST_ATTEST_QUOTE

    def evidence(self) -> bytes:
        values = self.pcr_values or {i: f"{i:02x}" * 32 for i in range(8)}
        public = ak_public(self.key, self.attributes)
        name = struct.pack(">H", fmt.TPM_ALG_SHA256) + hashlib.sha256(public).digest()
        digest = hashlib.sha256(b"".join(bytes.fromhex(values[i]) for i in sorted(values)))
        extra = self.extra if self.extra is not None else qualifying_data(M, TAG, RD, 0, 0)
        body = attest(signer=fmt.qualified_name_under_endorsement(name), extra=extra,
                      pcrs=tuple(sorted(values)), digest=digest.digest(),
                      magic=self.magic, type_=self.type_)
        der = _evidence.spki_der(self.key.public_key())
        claims = {"type": "tpm", "measurement": M, "fspf_tag": TAG, "report_data": RD,
                  "platform_id": _evidence.platform_id(der), "uid": 0, "gid": 0}
        return fmt.build_evidence(
            claims=claims, attest=body, signature=signature(self.signing_key or self.key, body),
            ak_public=public, pcrs={"sha256": {str(i): v for i, v in values.items()}},
            ek_certificate=None)


KEY = ec.generate_private_key(ec.SECP256R1())


def verify(evidence: bytes, verifier: TpmVerifier | None = None) -> VerifiedClaims | list[str]:
    return (verifier or TpmVerifier()).verify(evidence, expected_report_data=bytes.fromhex(RD))


def edit(evidence: bytes, change: Any) -> bytes:
    obj = json.loads(evidence)
    change(obj)
    return _evidence.canonical_json(obj)


def test_honest_quote_is_verified_and_needs_no_toleration() -> None:
    claims = verify(Quote(KEY).evidence())
    assert isinstance(claims, VerifiedClaims)
    assert (claims.evidence_type, claims.measurement, claims.fspf_tag) == ("tpm", M, TAG)
    assert claims.report_data == bytes.fromhex(RD)
    assert claims.platform_id == _evidence.platform_id(_evidence.spki_der(KEY.public_key()))
    assert claims.needs_tolerations == {}
    assert isinstance(VERIFIERS["tpm"], TpmVerifier)


def test_quote_signed_by_another_key_is_refused() -> None:
    reasons = verify(Quote(KEY, signing_key=ec.generate_private_key(ec.SECP256R1())).evidence())
    assert isinstance(reasons, list) and len(reasons) == 1
    assert reasons[0].startswith("TPM quote signature is invalid for attestation key")


def test_unrestricted_key_is_refused_even_with_a_valid_signature() -> None:
    # an unrestricted signing key signs any bytes, including a forged TPMS_ATTEST
    reasons = verify(Quote(KEY, attributes=fmt.ATTR_SIGN | fmt.ATTR_FIXED_TPM).evidence())
    assert isinstance(reasons, list) and len(reasons) == 1
    assert "not those of a restricted fixedTPM signing key" in reasons[0]


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("magic", 0xFF544348, "magic is 0xff544348, not TPM_GENERATED_VALUE"),
    ("type_", 0x8017, "not a quote (0x8018)"),
    ("extra", b"\0" * 32, "qualifying data does not bind"),
])
def test_malformed_or_unbound_attest_is_refused(field: str, value: Any, reason: str) -> None:
    quote = Quote(KEY)
    setattr(quote, field, value)
    reasons = verify(quote.evidence())
    assert isinstance(reasons, list) and any(reason in r for r in reasons), reasons


def test_claims_not_matching_qualifying_data_are_refused() -> None:
    def retag(obj: dict[str, Any]) -> None:
        obj["claims"]["fspf_tag"] = None
    reasons = verify(edit(Quote(KEY).evidence(), retag))
    assert isinstance(reasons, list) and len(reasons) == 1
    assert "qualifying data does not bind" in reasons[0]


def test_every_reason_is_reported_at_once() -> None:
    def break_all(obj: dict[str, Any]) -> None:
        obj["claims"]["measurement"] = "ef" * 32
        obj["claims"]["platform_id"] = "00" * 32
        obj["pcrs"]["sha256"]["3"] = ZERO
    reasons = verify(edit(Quote(KEY).evidence(), break_all))
    assert isinstance(reasons, list) and len(reasons) == 3, reasons
    assert reasons[0].startswith("evidence platform_id is not the hash of the attestation key")
    assert "qualifying data does not bind" in reasons[1]
    assert reasons[2].startswith("reported PCR values do not match")


def test_reported_pcrs_must_be_exactly_the_quoted_selection() -> None:
    def drop(obj: dict[str, Any]) -> None:
        del obj["pcrs"]["sha256"]["7"]
    reasons = verify(edit(Quote(KEY).evidence(), drop))
    assert reasons == ["evidence pcrs of bank sha256 differ from the quoted selection "
                       "['0', '1', '2', '3', '4', '5', '6', '7']"]


def test_pinned_pcrs() -> None:
    evidence = Quote(KEY).evidence()
    assert isinstance(verify(evidence, TpmVerifier({0: ZERO, 1: "01" * 32})), VerifiedClaims)
    assert verify(evidence, TpmVerifier({1: ZERO, 9: ZERO})) == [
        "PCR sha256:1 is 010101010101…, expected 000000000000…",
        "PCR sha256:9 is pinned to 000000000000… but not quoted: start the LAS with --pcrs "
        "including it",
    ]


def test_simulation_evidence_is_not_tpm_evidence() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415
    sim = simulation.sign_simulation(Ed25519PrivateKey.generate(), measurement=M, fspf_tag=TAG,
                                    report_data_hex=RD, uid=0, gid=0)
    assert verify(sim) == ["evidence type is 'simulation', not 'tpm'"]


def test_qualifying_data_encoding_is_unambiguous() -> None:
    values = {qualifying_data(M, None, RD), qualifying_data(M, TAG, RD),
              qualifying_data(RD, TAG, M), qualifying_data(M, "00" * 16, RD),
              qualifying_data(M, TAG, RD, 0, 0), qualifying_data(M, TAG, RD, 0, 1),
              qualifying_data(M, TAG, RD, 1, 0)}
    assert len(values) == 7 and all(len(v) == 32 for v in values)


def test_parsers_refuse_trailing_and_truncated_bytes() -> None:
    body = base64.b64decode(json.loads(Quote(KEY).evidence())["attest"])
    assert fmt.parse_attest(body).clock == 1234
    with pytest.raises(errors.EvidenceError, match="trailing bytes"):
        fmt.parse_attest(body + b"\0")
    with pytest.raises(errors.EvidenceError, match="truncated"):
        fmt.parse_attest(body[:-1])
    with pytest.raises(errors.EvidenceError, match="not on curve P-256"):
        fmt.parse_ak_public(ak_public(KEY)[:-32] + b"\1" * 32)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_hostile_mutations_never_raise_and_never_verify(data: st.DataObject) -> None:
    evidence = bytearray(HONEST)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(evidence) - 1))
        evidence[index] = data.draw(st.integers(0, 255))
    result = verify(bytes(evidence))
    assert isinstance(result, list) or bytes(evidence) == HONEST or _same_meaning(result)


HONEST = Quote(KEY).evidence()


def _same_meaning(claims: VerifiedClaims) -> bool:
    # a mutation that still verifies may only have changed JSON framing, never a claim
    return (claims.measurement, claims.fspf_tag, claims.report_data) == (M, TAG, bytes.fromhex(RD))


@pytest.mark.parametrize(("text", "pcrs"), [
    ("0-7", tuple(range(8))), ("sha256:0,7,10-11", (0, 7, 10, 11)), ("3", (3,)),
])
def test_parse_pcrs(text: str, pcrs: tuple[int, ...]) -> None:
    assert parse_pcrs(text) == pcrs


@pytest.mark.parametrize("text", ["", "24", "a-b", "7-", "7-3", "sha1:0"])
def test_parse_pcrs_refuses(text: str) -> None:
    with pytest.raises(errors.ConfigError, match="bad PCR selection"):
        parse_pcrs(text)
