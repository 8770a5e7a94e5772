"""Policy keys of ``tdx`` (cloister extensions under ``security.attestation``).

* ``tdx_mrtds: [<96 hex>, …]`` — accepted MRTDs (the TD's initial contents);
  TDX evidence counts only when this is set (the CPU signs any TD's launch).
* ``tdx_rtmrs: {0: <96 hex>, 1: …, 3: …}`` — RTMR values that must match.
* ``tdx_mrconfigids: [<96 hex>, …]``, ``tdx_mrowners: [<96 hex>, …]`` —
  accepted MRCONFIGID and MROWNER values.

TCB status is not a key: it maps onto SCONE's tolerations (``outdated-tcb``,
``software-hardening-needed``, ``insecure-configuration``).
"""

from __future__ import annotations

from typing import Any

from cloister.attest._plugin import PolicyKey, VerifiedClaims
from cloister.attest._policy_values import hex_list, hex_value, integer


def _tdx(claims: VerifiedClaims) -> dict[str, Any] | None:
    return dict(claims.type_claims) if "mrtd" in claims.type_claims else None


def _listed(field: str, key: str) -> PolicyKey:
    def check(wanted: tuple[str, ...], claims: VerifiedClaims) -> list[str]:
        tdx = _tdx(claims)
        if tdx is None or tdx[field] in wanted:
            return []
        return [f"TDX {field.upper()} {tdx[field]} is not in security.attestation.{key} "
                f"({len(wanted)} listed)"]

    return PolicyKey(key, lambda v: hex_list(v, key, 48), check,
                     f"accepted TDX {field.upper()} values (96 hex)")


def _parse_rtmrs(value: Any) -> tuple[tuple[int, str], ...]:
    if not isinstance(value, dict):
        raise ValueError("security.attestation.tdx_rtmrs must map RTMR indexes 0..3 to values")
    return tuple(sorted((integer(k, "a tdx_rtmrs index", 0, 3), hex_value(v, f"tdx_rtmrs.{k}", 48))
                        for k, v in value.items()))


def _check_rtmrs(pins: tuple[tuple[int, str], ...], claims: VerifiedClaims) -> list[str]:
    tdx = _tdx(claims)
    if tdx is None:
        return []
    return [f"TDX RTMR{index} is {tdx[f'rtmr{index}'][:16]}…, security.attestation.tdx_rtmrs "
            f"requires {want[:16]}…" for index, want in pins if tdx[f"rtmr{index}"] != want]


POLICY_KEYS = (
    _listed("mrtd", "tdx_mrtds"),
    PolicyKey("tdx_rtmrs", _parse_rtmrs, _check_rtmrs, "TDX RTMR values (index: 96 hex)"),
    _listed("mrconfigid", "tdx_mrconfigids"),
    _listed("mrowner", "tdx_mrowners"),
)
