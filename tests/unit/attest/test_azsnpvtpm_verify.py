"""az-snp-vtpm: Azure's real evidence (tests/data/vectors/az-snp-vtpm) verifies — SNP report
to AMD's root, runtime claims hashed into it, the vTPM quote by the key they carry."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from cloister.attest import Collateral, VerifiedClaims
from cloister.attest.azsnpvtpm import AzSnpVtpmVerifier
from cloister.attest.tpm import TPM_PCRS
from support import DATA

AZ = DATA / "vectors" / "az-snp-vtpm" / "milan"
AT = datetime(2025, 6, 1, tzinfo=UTC)
VERIFIER = AzSnpVtpmVerifier()


def _verify(evidence: bytes, collateral: Collateral | None = None,
            at: datetime = AT) -> VerifiedClaims | list[str]:
    return VERIFIER.verify(evidence, expected_report_data=b"", now=at,
                           collateral=collateral or Collateral())


def _edited(edit: object) -> bytes:
    obj = json.loads((AZ / "evidence.json").read_text())
    edit(obj)  # type: ignore[operator]
    return json.dumps(obj).encode()


def test_trustee_evidence_verifies_with_pcrs_and_snp_claims() -> None:
    claims = _verify((AZ / "evidence.json").read_bytes())
    assert isinstance(claims, VerifiedClaims), claims
    assert claims.evidence_type == "az-snp-vtpm"
    assert claims.report_data == b"challenge"  # the quote's nonce (Trustee's test nonce)
    assert claims.pcrs[0] == "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    snp = claims.type_claims["snp"]
    assert (snp["product"], snp["report_version"], snp["vmpl"]) == ("milan", 3, 0)
    assert len(snp["launch_measurement"]) == 96 and len(snp["chip_id"]) == 128
    assert claims.type_claims["vtpm_quote"] is True
    assert claims.requires_pins == ("tpm_pcrs",)
    # tpm_pcrs (the tpm plug-in's key) checks these PCRs
    assert TPM_PCRS.check(TPM_PCRS.parse({"0": claims.pcrs[0]}), claims) == []
    assert TPM_PCRS.check(TPM_PCRS.parse({"0": "00" * 32}), claims) == [
        f"PCR sha256:0 is {claims.pcrs[0]}, security.attestation.tpm_pcrs requires {'00' * 32}"]


def test_hcl_report_alone_verifies_against_the_thim_bundle() -> None:
    claims = _verify((AZ / "hcl-report.bin").read_bytes(),
                     Collateral({"vcek.pem": (AZ / "vcek.pem").read_bytes()}))
    assert isinstance(claims, VerifiedClaims), claims
    snp = claims.type_claims["snp"]
    assert snp["report_version"] == 2 and snp["product"] == "milan"
    assert claims.type_claims["vtpm_quote"] is False and claims.pcrs == {}


def _flip_hex(text: str, index: int) -> str:
    return text[:index] + ("1" if text[index] != "1" else "2") + text[index + 1:]


def test_flipped_bit_in_the_quote_signature() -> None:
    evidence = _edited(lambda o: o["tpm_quote"].update(
        signature=_flip_hex(o["tpm_quote"]["signature"], 20)))
    assert _verify(evidence) == ["vTPM quote signature does not verify under HCLAkPub (quote "
                                 "altered or signed by another key)"]


def test_altered_pcr_value() -> None:
    def edit(o: dict) -> None:  # type: ignore[type-arg]
        o["tpm_quote"]["pcrs"][7] = "00" * 32

    assert _verify(_edited(edit)) == [
        "reported PCR values do not match the vTPM quote's PCR digest"]


def test_altered_runtime_claims_break_the_snp_binding() -> None:
    def edit(o: dict) -> None:  # type: ignore[type-arg]
        raw = bytearray(base64.urlsafe_b64decode(o["hcl_report"] + "=="))
        at = raw.index(b'"vm-configuration"')
        raw[at + 1] = ord("W")
        o["hcl_report"] = base64.urlsafe_b64encode(bytes(raw)).decode()

    result = _verify(_edited(edit))
    assert result == ["SNP REPORT_DATA is not SHA-256 of the HCL runtime claims (claims altered)"]


def test_flipped_bit_in_the_snp_report() -> None:
    def edit(o: dict) -> None:  # type: ignore[type-arg]
        raw = bytearray(base64.urlsafe_b64decode(o["hcl_report"] + "=="))
        raw[0x20 + 0x90] ^= 1  # the launch measurement
        o["hcl_report"] = base64.urlsafe_b64encode(bytes(raw)).decode()

    result = _verify(_edited(edit))
    assert isinstance(result, list) and result[0].startswith("SNP report signature does not verify")


def test_vcek_outside_its_validity() -> None:
    result = _verify((AZ / "evidence.json").read_bytes(), at=datetime(2040, 1, 1, tzinfo=UTC))
    assert isinstance(result, list) and any("expired on" in r for r in result)
