"""``security.attestation.tpm_pcrs``: SHA-256 PCR values hardware evidence must carry."""

from __future__ import annotations

from typing import Any

from cloister.attest._plugin import PolicyKey, VerifiedClaims
from cloister.attest._policy_values import hex_value


def parse_pcr_pins(value: Any) -> tuple[tuple[int, str], ...]:
    """``{0: <hex>, 7: <hex>}`` → sorted ``((0, hex), (7, hex))``."""
    if not isinstance(value, dict):
        raise ValueError("security.attestation.tpm_pcrs must map PCR indexes to SHA-256 values")
    pins = []
    for key, item in value.items():
        if not key.isdigit() or not 0 <= int(key) <= 23:
            raise ValueError(f"tpm_pcrs key {key!r} is not a PCR index (0..23)")
        if not isinstance(item, str) or len(item) != 64:
            raise ValueError(f"PCR {key} value {item!r} is not 64 hex digits (a SHA-256 PCR)")
        pins.append((int(key), hex_value(item, f"tpm_pcrs.{key}", 32)))
    return tuple(sorted(pins))


def check_pcr_pins(pins: tuple[tuple[int, str], ...], claims: VerifiedClaims) -> list[str]:
    """Pinned PCRs against the authenticated values (evidence without PCRs fails a pin)."""
    reasons = []
    for index, want in pins:
        got = claims.pcrs.get(index)
        if got is None:
            reasons.append(f"PCR sha256:{index} is pinned by security.attestation.tpm_pcrs, but "
                           f"{claims.evidence_type} evidence does not carry it")
        elif got != want:
            reasons.append(f"PCR sha256:{index} is {got}, security.attestation.tpm_pcrs "
                           f"requires {want}")
    return reasons


TPM_PCRS = PolicyKey(
    name="tpm_pcrs",
    parse=parse_pcr_pins,
    check=check_pcr_pins,
    doc="SHA-256 PCR values (index: 64 hex) every tpm or az-snp-vtpm quote must carry",
)
