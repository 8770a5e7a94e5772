"""Policy keys of ``sev-snp`` (cloister extensions under ``security.attestation``).

* ``snp_measurements: [<96 hex>, …]`` — accepted launch measurements; SNP
  evidence counts only when this is set (the CPU signs any guest's launch).
* ``snp_min_tcb: {bootloader: N, tee: N, snp: N, microcode: N[, fmc: N]}`` —
  every listed level of the reported TCB must be at least N.
* ``snp_vmpls: [0, …]`` — VMPLs the report may come from.
* ``snp_host_data: [<64 hex>, …]`` — accepted HOST_DATA values.

The keys apply to evidence that carries SEV-SNP claims (``sev-snp``, and
``az-snp-vtpm``, whose SNP report is inside); other evidence ignores them.
"""

from __future__ import annotations

from typing import Any

from cloister.attest._plugin import PolicyKey, VerifiedClaims
from cloister.attest._policy_values import hex_list, integer, mapping

TCB_PARTS = ("bootloader", "tee", "snp", "microcode", "fmc")


def _snp(claims: VerifiedClaims) -> dict[str, Any] | None:
    """The SNP claims of evidence that has them (``type_claims`` or its ``snp`` part)."""
    nested = claims.type_claims.get("snp")
    if isinstance(nested, dict):
        return nested
    return dict(claims.type_claims) if "launch_measurement" in claims.type_claims else None


def _check_measurements(wanted: tuple[str, ...], claims: VerifiedClaims) -> list[str]:
    snp = _snp(claims)
    if snp is None or snp["launch_measurement"] in wanted:
        return []
    return [f"SEV-SNP launch measurement {snp['launch_measurement']} is not in "
            f"security.attestation.snp_measurements ({len(wanted)} listed)"]


def _parse_tcb(value: Any) -> tuple[tuple[str, int], ...]:
    levels = mapping(value, "security.attestation.snp_min_tcb", TCB_PARTS)
    return tuple(sorted((part, integer(level, f"snp_min_tcb.{part}", 0, 255))
                        for part, level in levels.items()))


def _check_tcb(minimum: tuple[tuple[str, int], ...], claims: VerifiedClaims) -> list[str]:
    snp = _snp(claims)
    if snp is None:
        return []
    reasons = []
    for part, level in minimum:
        got = snp["reported_tcb"].get(part)
        if got is None or got < level:
            reasons.append(f"SEV-SNP reported TCB {part} level {got} is below the minimum "
                           f"{level} of security.attestation.snp_min_tcb: update the firmware "
                           "or lower the minimum")
    return reasons


def _parse_vmpls(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(sorted({integer(v, "an entry of snp_vmpls", 0, 3) for v in items}))


def _check_vmpls(allowed: tuple[int, ...], claims: VerifiedClaims) -> list[str]:
    snp = _snp(claims)
    if snp is None or snp["vmpl"] in allowed:
        return []
    return [f"SEV-SNP report comes from VMPL {snp['vmpl']}, security.attestation.snp_vmpls "
            f"allows {list(allowed)}"]


def _check_host_data(wanted: tuple[str, ...], claims: VerifiedClaims) -> list[str]:
    snp = _snp(claims)
    if snp is None or snp["host_data"] in wanted:
        return []
    return [f"SEV-SNP host data {snp['host_data'][:16]}… is not in "
            "security.attestation.snp_host_data"]


POLICY_KEYS = (
    PolicyKey("snp_measurements", lambda v: hex_list(v, "snp_measurements", 48),
              _check_measurements, "accepted SEV-SNP launch measurements (96 hex)"),
    PolicyKey("snp_min_tcb", _parse_tcb, _check_tcb,
              "minimum SEV-SNP reported TCB levels (bootloader, tee, snp, microcode, fmc)"),
    PolicyKey("snp_vmpls", _parse_vmpls, _check_vmpls, "VMPLs an SEV-SNP report may come from"),
    PolicyKey("snp_host_data", lambda v: hex_list(v, "snp_host_data", 32), _check_host_data,
              "accepted SEV-SNP HOST_DATA values (64 hex)"),
)
