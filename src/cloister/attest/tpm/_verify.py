"""The ``tpm`` verifier: TPM 2.0 quotes checked with ``cryptography`` alone.

It checks, and reports every failure at once:

* the evidence and the TPM structures are well-formed (TPMS_ATTEST magic
  ``TPM_GENERATED_VALUE`` and type ``TPM_ST_ATTEST_QUOTE``);
* the attestation key (AK) is a restricted, fixedTPM, ECC P-256 signing key
  and ``platform_id`` is the hash of its DER SPKI;
* the quote's ``qualifiedSigner`` is that AK (a primary key of the
  endorsement hierarchy);
* the ECDSA signature over ``SHA256(TPMS_ATTEST)`` is valid under the AK;
* ``extraData`` equals :func:`._tpm_format.qualifying_data` of the claims —
  the claims (and through ``report_data`` the CAS nonce and the runtime's
  ephemeral key) are what the TPM signed;
* ``pcrDigest`` equals SHA-256 over the reported PCR values in selection
  order, so the reported values are the quoted ones;
* optionally, PCR values pinned when the verifier is constructed
  (``TpmVerifier(expected_pcrs={0: "<hex>"})``).

Freshness comes from the single-use CAS nonce inside ``report_data`` (the
decision's binding step); the TPM clock, reset and restart counters are
parsed (:class:`._tpm_format.Quote`) but a stateless verifier cannot compare
them with an earlier quote.

What a valid ``tpm`` quote proves: the AK — whose platform id the policy
pins in ``platforms:`` — signed these claims and PCR values.  Being a
restricted key, it signs only digests the TPM itself produced.  What it
does not prove: that the AK lives in a genuine TPM (no EK certificate chain
is checked: swtpm has none; enrolment by the operator on the machine is the
trust anchor), nor that the measured runtime is what runs, unless the boot
chain extends it into PCRs that the policy pins — the LAS asserts the
measurement, as with simulation evidence.  The verifier therefore asks for
no toleration: the platform identity is hardware-rooted.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloister import errors
from cloister.attest import _evidence
from cloister.attest._plugin import NO_COLLATERAL, Collateral, VerifiedClaims
from cloister.attest.tpm import _format as fmt
from cloister.attest.tpm import _vendor


class TpmVerifier:
    """Verifies ``tpm`` evidence (TPM2_Quote by an ECC P-256 AK).

    ``expected_pcrs`` maps a SHA-256 PCR index to the 64-hex value it must
    have; each pinned PCR must be quoted and equal.
    """

    evidence_type = fmt.TPM

    def __init__(self, expected_pcrs: Mapping[int, str] | None = None) -> None:
        self.expected_pcrs = {int(k): v.lower() for k, v in (expected_pcrs or {}).items()}

    def verify(
        self,
        evidence: bytes,
        *,
        expected_report_data: bytes,
        now: datetime | None = None,
        collateral: Collateral = NO_COLLATERAL,
    ) -> VerifiedClaims | list[str]:
        # the report data travels in clear in the claims (bound by extraData);
        # the decision's binding step compares it with expected_report_data
        del expected_report_data, collateral
        if not evidence.lstrip().startswith(b"{"):  # a vTPM attestation with a vendor AK chain
            return _vendor.verify_attestation(evidence, now, _vendor.shipped_certificates())
        try:
            parts = fmt.parse_evidence(evidence)
            ak = fmt.parse_ak_public(parts.ak_public)
        except errors.EvidenceError as exc:
            return [_evidence.message(exc)]
        claims = parts.claims
        reasons: list[str] = []
        der = _evidence.spki_der(ak.key)
        if not hmac.compare_digest(_evidence.platform_id(der), claims["platform_id"]):
            reasons.append("evidence platform_id is not the hash of the attestation key "
                           "(evidence from another platform key)")
        # a sanity check, not a proof: the attributes are the ones the evidence carries,
        # and platform_id pins only the public key, so what makes the AK a TPM's restricted
        # key is the enrolment of that pin (cloister las enroll on the machine itself)
        missing = fmt.AK_REQUIRED_ATTRIBUTES & ~ak.attributes
        if missing or ak.attributes & fmt.ATTR_DECRYPT:
            reasons.append(f"attestation key attributes {ak.attributes:#010x} are not those of "
                           "a restricted fixedTPM signing key")
        try:
            r, s = fmt.parse_signature(parts.signature)
            ak.key.verify(encode_dss_signature(r, s), parts.attest, ec.ECDSA(hashes.SHA256()))
        except errors.EvidenceError as exc:
            reasons.append(_evidence.message(exc))
        except InvalidSignature:
            reasons.append(f"TPM quote signature is invalid for attestation key "
                           f"{claims['platform_id'][:12]}… (quote altered or signed by "
                           "another key)")
        try:
            quote = fmt.parse_attest(parts.attest)
        except errors.EvidenceError as exc:
            return [*reasons, _evidence.message(exc)]
        reasons += self._check_quote(quote, parts, ak)
        if reasons:
            return reasons
        return VerifiedClaims(
            evidence_type=fmt.TPM,
            measurement=claims["measurement"],
            platform_id=claims["platform_id"],
            report_data=bytes.fromhex(claims["report_data"]),
            fspf_tag=claims["fspf_tag"],
            uid=claims["uid"],
            gid=claims["gid"],
            # no EK certificate chain is verified: the AK is whatever key the evidence
            # carries, so only a policy's platform pin makes it hardware-rooted
            requires_platform_pin=True,
            pcrs=MappingProxyType(
                {int(k): v for k, v in parts.pcrs.get("sha256", {}).items()}
            ),
        )

    def _check_quote(self, quote: fmt.Quote, parts: fmt.TpmEvidence,
                     ak: fmt.AkPublic) -> list[str]:
        reasons = []
        claims = parts.claims
        if not hmac.compare_digest(quote.qualified_signer,
                                   fmt.qualified_name_under_endorsement(ak.name)):
            reasons.append("quote's qualifiedSigner is not the enclosed attestation key "
                           "(a primary key of the endorsement hierarchy)")
        qualifying = fmt.qualifying_data(claims["measurement"], claims["fspf_tag"],
                                         claims["report_data"], claims["uid"], claims["gid"])
        if not hmac.compare_digest(quote.extra_data, qualifying):
            reasons.append("quote's qualifying data does not bind the claimed measurement, "
                           "fspf tag, report data, uid and gid (claims altered, or quote made for "
                           "another key or nonce)")
        problems = fmt.selection_problems(quote.selection, parts.pcrs)
        if problems:
            return reasons + problems
        digest = fmt.pcr_digest(quote.selection, parts.pcrs)
        if not hmac.compare_digest(digest, quote.pcr_digest):
            reasons.append("reported PCR values do not match the quoted PCR digest "
                           f"{quote.pcr_digest.hex()[:12]}…")
        quoted = dict.fromkeys(
            (pcr for alg, pcrs in quote.selection if alg == fmt.TPM_ALG_SHA256 for pcr in pcrs),
            True)
        bank = parts.pcrs.get("sha256", {})
        for pcr, want in sorted(self.expected_pcrs.items()):
            if pcr not in quoted:
                reasons.append(f"PCR sha256:{pcr} is pinned to {want[:12]}… but not quoted: "
                               "start the LAS with --pcrs including it")
            elif bank[str(pcr)] != want:
                reasons.append(f"PCR sha256:{pcr} is {bank[str(pcr)][:12]}…, "
                               f"expected {want[:12]}…")
        return reasons
