"""Azure confidential VM evidence: the HCL report (an SNP report inside) and a vTPM quote.

HCL report (as the paravisor writes it into vTPM NV index 0x01400001)::

    0x000   header 32: "HCLA", version u32, report size u32, request type u32, …
    0x020   SNP attestation report (0x4A0 bytes, see :mod:`cloister.attest.sevsnp`)
    0x4C0   runtime claims header 20: data size u32, version u32, report type u32,
            hash type u32 (1: SHA-256), claims size u32
    0x4D4   runtime claims: JSON with the vTPM's keys ("HCLAkPub", "HCLEkPub" as JWK),
            "vm-configuration" and "user-data"

The SNP report's REPORT_DATA starts with SHA-256 of the runtime claims; the
attestation key they carry signs the TPM quote (RSASSA-PKCS1-v1_5, SHA-256).
Accepted encodings: Trustee's (``{"version": 1, "hcl_report": <base64url>,
"tpm_quote": {"message": <hex TPMS_ATTEST>, "pcrs": [24 x <hex SHA-256>],
"signature": <hex>}, "vcek": <base64url DER>}``), cloister's envelope (the
same fields next to ``format``, ``version``, ``type``, ``claims``), or a raw
HCL report (no quote).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from cloister import errors
from cloister.attest import _evidence

AZ_SNP_VTPM = "az-snp-vtpm"
HCL_MAGIC = b"HCLA"
SNP_OFFSET = 0x20
SNP_SIZE = 0x4A0
CLAIMS_HEADER = SNP_OFFSET + SNP_SIZE
_ENVELOPE_KEYS = frozenset({"format", "version", "type", "claims", "hcl_report", "tpm_quote",
                            "vcek"})


@dataclass(frozen=True)
class TpmQuote:
    message: bytes
    signature: bytes
    pcrs: tuple[str, ...]


@dataclass(frozen=True)
class HclReport:
    snp_report: bytes
    runtime_claims: bytes
    hash_type: int

    @property
    def claims_json(self) -> dict[str, Any]:
        value = json.loads(self.runtime_claims.rstrip(b"\0"))
        if not isinstance(value, dict):
            raise ValueError("runtime claims are not a JSON object")
        return value


@dataclass(frozen=True)
class AzEvidence:
    hcl: HclReport
    quote: TpmQuote | None
    vcek: bytes | None
    claims: dict[str, Any] | None


def parse_hcl_report(data: bytes) -> HclReport:
    if len(data) < CLAIMS_HEADER + 20 or data[:4] != HCL_MAGIC:
        raise errors.EvidenceError("not an Azure HCL report (no HCLA header or too short)")
    _, _, _, hash_type, size = struct.unpack_from("<IIIII", data, CLAIMS_HEADER)
    start = CLAIMS_HEADER + 20
    if start + size > len(data):
        raise errors.EvidenceError("HCL report's runtime claims run past its end")
    return HclReport(data[SNP_OFFSET:SNP_OFFSET + SNP_SIZE], data[start:start + size], hash_type)


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not a string")
    url = text.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(url + "=" * (-len(url) % 4))


def _quote(obj: Any) -> TpmQuote:
    if not isinstance(obj, dict) or set(obj) != {"message", "pcrs", "signature"}:
        raise errors.EvidenceError("tpm_quote must have exactly message, pcrs and signature")
    pcrs = obj["pcrs"]
    if not isinstance(pcrs, list) or len(pcrs) != 24 or not all(
            isinstance(p, str) and _evidence.HEX64.fullmatch(p.lower()) for p in pcrs):
        raise errors.EvidenceError("tpm_quote pcrs must be 24 SHA-256 values in hex")
    try:
        return TpmQuote(bytes.fromhex(obj["message"]), bytes.fromhex(obj["signature"]),
                        tuple(p.lower() for p in pcrs))
    except (TypeError, ValueError):
        raise errors.EvidenceError("tpm_quote message or signature is not hex") from None


def parse_evidence(evidence: bytes) -> AzEvidence:
    """Any of the three encodings; nothing here is authenticated."""
    if evidence[:4] == HCL_MAGIC:
        return AzEvidence(parse_hcl_report(evidence), None, None, None)
    if evidence.lstrip().startswith(b'{"format"'):
        # no cloister LAS quotes this type yet: its claims carry no caller uid or gid
        obj = _evidence.parse_typed(evidence, AZ_SNP_VTPM, _ENVELOPE_KEYS,
                                    _evidence.BASE_CLAIM_KEYS)
        claims: dict[str, Any] | None = obj["claims"]
    else:
        try:
            obj = json.loads(evidence)
        except ValueError:
            raise errors.EvidenceError("az-snp-vtpm evidence is not JSON or an HCL report") \
                from None
        if not isinstance(obj, dict) or obj.get("version") != 1:
            raise errors.EvidenceError("az-snp-vtpm evidence is not version 1")
        claims = None
    try:
        hcl = _b64(obj["hcl_report"])
        vcek = None if obj.get("vcek") is None else _b64(obj["vcek"])
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise errors.EvidenceError("az-snp-vtpm evidence lacks a base64 hcl_report") from None
    return AzEvidence(parse_hcl_report(hcl), _quote(obj.get("tpm_quote")), vcek, claims)


def build_evidence(claims: dict[str, Any], hcl_report: bytes, quote: TpmQuote,
                   vcek: bytes | None) -> bytes:
    """The canonical ``az-snp-vtpm`` envelope (the LAS quoter writes it)."""
    return _evidence.canonical_json({
        "format": _evidence.FORMAT, "version": _evidence.VERSION, "type": AZ_SNP_VTPM,
        "claims": claims, "hcl_report": base64.urlsafe_b64encode(hcl_report).decode(),
        "tpm_quote": {"message": quote.message.hex(), "pcrs": list(quote.pcrs),
                      "signature": quote.signature.hex()},
        "vcek": None if vcek is None else base64.urlsafe_b64encode(vcek).decode(),
    })
