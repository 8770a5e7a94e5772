"""The ``az-snp-vtpm`` verifier: Azure's HCL report, its SNP report, and the vTPM quote.

Pure: the evidence, the time and the collateral are inputs.  It checks,
collecting every failure (numbers as in the code):

1. the evidence parses (HCL report with SNP report and runtime claims;
   a vTPM quote unless a raw HCL report is given) and a time is given;
2. the SNP report verifies as ``sev-snp`` evidence does (VCEK from the
   evidence or the collateral, chain to AMD's pinned ARK, TCB);
3. REPORT_DATA starts with SHA-256 of the runtime claims (hash type SHA-256);
4. the runtime claims carry the vTPM attestation key ``HCLAkPub`` (RSA);
5. that key signed the TPM quote (RSASSA-PKCS1-v1_5 with SHA-256) and the
   quote is a TPM-generated quote;
6. the quote's PCR digest equals SHA-256 of the reported PCRs it selects;
7. with cloister's envelope, the quote's qualifying data binds the runtime
   claims (measurement, fspf tag, report data) as ``tpm`` evidence does.

What it proves: AMD's CPU signed the launch of Azure's paravisor, which
vouches for the vTPM key that quoted these PCRs — against the host and its
administrator.  The guest OS is measured only into the PCRs, so this
evidence counts only with ``tpm_pcrs`` pinned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloister import errors
from cloister.attest import _evidence
from cloister.attest._plugin import NO_COLLATERAL, Collateral, VerifiedClaims
from cloister.attest.azsnpvtpm import _format as fmt
from cloister.attest.sevsnp import SnpVerifier
from cloister.attest.tpm import _format as tpm_fmt

SHA256_HASH_TYPE = 1


def _jwk_rsa(key: Any) -> rsa.RSAPublicKey | None:
    try:
        def number(text: str) -> int:
            return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

        return rsa.RSAPublicNumbers(number(key["e"]), number(key["n"])).public_key()
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None


class AzSnpVtpmVerifier:
    """Verifies ``az-snp-vtpm`` evidence; the SNP part by ``snp`` (default: AMD's roots)."""

    evidence_type = fmt.AZ_SNP_VTPM

    def __init__(self, snp: SnpVerifier | None = None) -> None:
        self.snp = snp or SnpVerifier()

    def verify(
        self,
        evidence: bytes,
        *,
        expected_report_data: bytes,
        now: datetime | None = None,
        collateral: Collateral = NO_COLLATERAL,
    ) -> VerifiedClaims | list[str]:
        del expected_report_data  # compared by the decision's binding step
        # (1) well-formed, a time given
        try:
            parsed = fmt.parse_evidence(evidence)
            runtime = parsed.hcl.claims_json
        except errors.EvidenceError as exc:
            return [_evidence.message(exc)]
        except ValueError as exc:
            return [f"HCL report's runtime claims are not JSON: {exc}"]
        if now is None:
            return ["no verification time given: certificates cannot be checked"]
        reasons: list[str] = []
        # (2) the SNP report, as sev-snp evidence
        files = dict(collateral.files)
        if parsed.vcek is not None:
            files["az-snp-vtpm/evidence-vcek.der"] = parsed.vcek
        snp = self.snp.verify(parsed.hcl.snp_report, expected_report_data=b"", now=now,
                              collateral=Collateral(MappingProxyType(files)))
        if isinstance(snp, list):
            reasons += snp
        # (3) REPORT_DATA = SHA-256(runtime claims)
        report_data = parsed.hcl.snp_report[0x50:0x70]
        if parsed.hcl.hash_type != SHA256_HASH_TYPE or not hmac.compare_digest(
                report_data, hashlib.sha256(parsed.hcl.runtime_claims).digest()):
            reasons.append("SNP REPORT_DATA is not SHA-256 of the HCL runtime claims "
                           "(claims altered)")
        # (4) the attestation key in the runtime claims
        listed = runtime.get("keys")
        keys: list[Any] = listed if isinstance(listed, list) else []
        ak = _jwk_rsa(next((k for k in keys if isinstance(k, dict)
                            and k.get("kid") == "HCLAkPub"), None))
        if ak is None:
            return [*reasons, "HCL runtime claims carry no RSA attestation key HCLAkPub"]
        quote = parsed.quote
        pcrs: dict[int, str] = {}
        nonce = b""
        if quote is not None:
            nonce, pcrs = _check_quote(quote, ak, parsed.claims, reasons)
        if reasons or isinstance(snp, list):
            return reasons
        return _claims(parsed, runtime, snp, ak=ak, pcrs=pcrs, nonce=nonce)


def _check_quote(quote: fmt.TpmQuote, ak: rsa.RSAPublicKey, claims: dict[str, Any] | None,
                 reasons: list[str]) -> tuple[bytes, dict[int, str]]:
    # (5) signed by the AK, a TPM quote
    try:
        ak.verify(quote.signature, quote.message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        reasons.append("vTPM quote signature does not verify under HCLAkPub (quote altered "
                       "or signed by another key)")
    try:
        attest = tpm_fmt.parse_attest(quote.message)
    except errors.EvidenceError as exc:
        reasons.append(_evidence.message(exc))
        return b"", {}
    # (6) the reported PCRs are the quoted ones
    selected = [pcr for alg, ps in attest.selection if alg == tpm_fmt.TPM_ALG_SHA256 for pcr in ps]
    if any(alg != tpm_fmt.TPM_ALG_SHA256 for alg, _ in attest.selection):
        reasons.append("vTPM quote selects a PCR bank other than SHA-256")
    digest = hashlib.sha256(b"".join(bytes.fromhex(quote.pcrs[p]) for p in selected)).digest()
    if not hmac.compare_digest(digest, attest.pcr_digest):
        reasons.append("reported PCR values do not match the vTPM quote's PCR digest")
    # (7) the envelope's runtime claims are what the vTPM was asked to quote
    if claims is not None:
        wanted = tpm_fmt.qualifying_data(claims["measurement"], claims["fspf_tag"],
                                         claims["report_data"])
        if not hmac.compare_digest(attest.extra_data, wanted):
            reasons.append("vTPM quote's qualifying data does not bind the claimed measurement, "
                           "fspf tag and report data")
    return attest.extra_data, {p: quote.pcrs[p] for p in selected}


def _claims(parsed: fmt.AzEvidence, runtime: dict[str, Any], snp: VerifiedClaims, *,
            ak: rsa.RSAPublicKey, pcrs: dict[int, str], nonce: bytes) -> VerifiedClaims:
    claims = parsed.claims
    spki = _evidence.spki_der(ak)
    type_claims = {
        "snp": dict(snp.type_claims),
        "vm_configuration": runtime.get("vm-configuration"),
        "user_data": runtime.get("user-data"),
        "vtpm_quote": parsed.quote is not None,
        "tpm_nonce": nonce.hex(),
    }
    return VerifiedClaims(
        evidence_type=fmt.AZ_SNP_VTPM,
        measurement=claims["measurement"] if claims else "",
        platform_id=_evidence.platform_id(spki),
        report_data=bytes.fromhex(claims["report_data"]) if claims else nonce,
        fspf_tag=claims["fspf_tag"] if claims else None,
        needs_tolerations=snp.needs_tolerations,
        requires_pins=("tpm_pcrs",),
        pcrs=MappingProxyType(pcrs),
        type_claims=MappingProxyType(type_claims),
    )
