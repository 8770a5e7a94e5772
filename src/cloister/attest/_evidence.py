"""The evidence envelope (format ``cloister-evidence`` version 1) and report data.

Evidence is UTF-8 *canonical JSON* (keys sorted, no insignificant
whitespace, ASCII only — ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=True)``) of one object::

    {"format": "cloister-evidence", "version": 1, "type": "<evidence type>", ...}

The outer ``type`` selects the verifier (:mod:`._verify`); the remaining
fields belong to that type.  For ``type: "simulation"``::

    "claims": {"type": "simulation",
               "measurement": "<64 lower-case hex>",
               "fspf_tag": "<32 lower-case hex>" | null,
               "report_data": "<64 lower-case hex>",
               "platform_id": "<64 lower-case hex>"},
    "public_key": "<base64 of the platform key's DER SubjectPublicKeyInfo>",
    "signature": "<base64 Ed25519 signature>"

The signature covers ``b"cloister-evidence-v1\\0" + canonical_json(claims)``.
``platform_id`` is the SHA-256 hex of the DER SPKI of the signing key, and
``report_data`` is ``SHA256(nonce ‖ ephemeral public key bytes)`` (see
:func:`report_data`).  Parsing is strict: unknown or missing keys, duplicate
keys, upper-case hex or evidence over :data:`MAX_EVIDENCE_BYTES` are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister import errors

FORMAT = "cloister-evidence"
VERSION = 1
SIMULATION = "simulation"
#: domain separation of the signed bytes (never reuse the key for anything else)
SIGNATURE_CONTEXT = b"cloister-evidence-v1\0"
MAX_EVIDENCE_BYTES = 16 * 1024

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
_CLAIM_KEYS = frozenset({"type", "measurement", "fspf_tag", "report_data", "platform_id"})
_SIMULATION_KEYS = frozenset({"format", "version", "type", "claims", "public_key", "signature"})


def canonical_json(obj: Any) -> bytes:
    """The one canonical encoding of a JSON value (sorted keys, compact, ASCII)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def report_data(nonce: bytes, ephemeral_public_key: bytes) -> bytes:
    """``SHA256(nonce ‖ ephemeral public key)`` — 32 bytes bound into evidence.

    The public key has a fixed length (32 bytes for X25519), so the
    concatenation is unambiguous.
    """
    return hashlib.sha256(nonce + ephemeral_public_key).digest()


def spki_der(public_key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a ``cryptography`` public key."""
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def platform_id(public_key_der: bytes) -> str:
    """Platform identity: SHA-256 hex of the quoting key's DER SPKI (what ``platforms:`` lists)."""
    return hashlib.sha256(public_key_der).hexdigest()


def check_claim_values(measurement: str, fspf_tag: str | None, report_data_hex: str) -> list[str]:
    """Reasons why quote inputs are malformed (empty when they are well-formed)."""
    problems = []
    if not isinstance(measurement, str) or not HEX64.fullmatch(measurement):
        problems.append("measurement must be 64 lower-case hex digits")
    if fspf_tag is not None and (not isinstance(fspf_tag, str) or not HEX32.fullmatch(fspf_tag)):
        problems.append("fspf_tag must be 32 lower-case hex digits or null")
    if not isinstance(report_data_hex, str) or not HEX64.fullmatch(report_data_hex):
        problems.append("report_data must be 64 lower-case hex digits")
    return problems


def sign_simulation(
    key: Ed25519PrivateKey, *, measurement: str, fspf_tag: str | None, report_data_hex: str
) -> bytes:
    """Simulation evidence over the given claims, signed by ``key`` (the LAS platform key)."""
    problems = check_claim_values(measurement, fspf_tag, report_data_hex)
    if problems:
        raise errors.EvidenceError("cannot quote malformed claims", details=problems)
    der = spki_der(key.public_key())
    claims = {
        "type": SIMULATION,
        "measurement": measurement,
        "fspf_tag": fspf_tag,
        "report_data": report_data_hex,
        "platform_id": platform_id(der),
    }
    signature = key.sign(SIGNATURE_CONTEXT + canonical_json(claims))
    return canonical_json({
        "format": FORMAT,
        "version": VERSION,
        "type": SIMULATION,
        "claims": claims,
        "public_key": base64.b64encode(der).decode(),
        "signature": base64.b64encode(signature).decode(),
    })


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_envelope(evidence: bytes) -> dict[str, Any]:
    """The envelope object of ``evidence``; :class:`errors.EvidenceError` if it is not one."""
    if len(evidence) > MAX_EVIDENCE_BYTES:
        raise errors.EvidenceError(
            f"evidence is {len(evidence)} bytes, over the limit of {MAX_EVIDENCE_BYTES}"
        )
    try:
        obj = json.loads(evidence.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.EvidenceError(f"evidence is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.EvidenceError("evidence is not a JSON object")
    if obj.get("format") != FORMAT or obj.get("version") != VERSION:
        raise errors.EvidenceError(
            f"evidence is not {FORMAT} version {VERSION}",
            details=["produce it with a cloister LAS of the same major version"],
        )
    if not isinstance(obj.get("type"), str):
        raise errors.EvidenceError("evidence names no type")
    return obj


def evidence_type(evidence: bytes) -> str:
    """The ``type`` an evidence envelope declares (which verifier must check it)."""
    type_: str = parse_envelope(evidence)["type"]
    return type_


def parse_simulation(evidence: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """``(claims, public key DER, signature)`` of simulation evidence, shape-checked only.

    Nothing here is authenticated: the caller verifies the signature.
    """
    obj = parse_envelope(evidence)
    if obj["type"] != SIMULATION:
        raise errors.EvidenceError(f"evidence type is {obj['type']!r}, not {SIMULATION!r}")
    if set(obj) != _SIMULATION_KEYS:
        raise errors.EvidenceError(
            "simulation evidence has unexpected fields",
            details=[f"fields: {', '.join(sorted(obj))}"],
        )
    claims = obj["claims"]
    if not isinstance(claims, dict) or set(claims) != _CLAIM_KEYS:
        raise errors.EvidenceError("simulation claims must have exactly the fields "
                                   f"{', '.join(sorted(_CLAIM_KEYS))}")
    problems = check_claim_values(claims["measurement"], claims["fspf_tag"],
                                  claims["report_data"])
    if claims["type"] != SIMULATION:
        problems.append("claims type must be 'simulation'")
    if not isinstance(claims["platform_id"], str) or not HEX64.fullmatch(claims["platform_id"]):
        problems.append("platform_id must be 64 lower-case hex digits")
    if problems:
        raise errors.EvidenceError("simulation claims are malformed", details=problems)
    try:
        der = base64.b64decode(obj["public_key"], validate=True)
        signature = base64.b64decode(obj["signature"], validate=True)
    except (TypeError, binascii.Error):
        raise errors.EvidenceError("evidence public_key or signature is not base64") from None
    return claims, der, signature
