"""The evidence envelope (format ``cloister-evidence`` version 1) and report data.

Evidence is UTF-8 *canonical JSON* (keys sorted, no insignificant
whitespace, ASCII only — ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=True)``) of one object::

    {"format": "cloister-evidence", "version": 1, "type": "<evidence type>", ...}

The outer ``type`` selects the plug-in (:mod:`._registry`); the remaining
fields belong to that type, and every type carries the runtime ``claims``
the LAS was asked to quote (:func:`parse_claims`)::

    "claims": {"type": "<evidence type>",
               "measurement": "<64 lower-case hex>",
               "fspf_tag": "<32 lower-case hex>" | null,
               "report_data": "<64 lower-case hex>",
               "platform_id": "<64 lower-case hex>",
               "uid": <int>, "gid": <int>}

``platform_id`` is the SHA-256 hex of the DER SPKI of the quoting key, and
``report_data`` is ``SHA256(nonce ‖ ephemeral public key bytes)`` (see
:func:`report_data`).  ``measurement``, ``fspf_tag``, ``uid`` and ``gid`` are
what the LAS measured of the process on the other end of its socket (see
:mod:`._caller`), never what that process said about itself.  Parsing is
strict: unknown or missing keys, duplicate keys, upper-case hex or evidence
over :data:`MAX_EVIDENCE_BYTES` are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from typing import Any

from cloister import errors

FORMAT = "cloister-evidence"
VERSION = 1
#: a TDX quote or an SNP report with its certificate table, base64, fits with room
MAX_EVIDENCE_BYTES = 64 * 1024

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
CLAIM_KEYS = frozenset({"type", "measurement", "fspf_tag", "report_data", "platform_id",
                        "uid", "gid"})
#: what a type whose hardware binds only the runtime measurement carries (no uid, gid)
BASE_CLAIM_KEYS = CLAIM_KEYS - {"uid", "gid"}
_MAX_ID = 2**32 - 1


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
    # imported here: `cloister run` needs report_data only, and this package costs it ~4 ms
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

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


def check_ids(uid: object, gid: object) -> list[str]:
    """Reasons why a uid/gid claim is malformed (each an integer from 0 to 2³²-1)."""
    return [f"{name} must be an integer from 0 to {_MAX_ID}" for name, value in
            (("uid", uid), ("gid", gid))
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_ID]


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


def parse_claims(claims: Any, type_: str, keys: frozenset[str] = CLAIM_KEYS) -> dict[str, Any]:
    """The runtime claims object every cloister envelope carries, shape-checked.

    ``{"type", "measurement", "fspf_tag", "report_data", "platform_id", "uid",
    "gid"}``: what the LAS measured of its caller.  Nothing here is authenticated.
    """
    if not isinstance(claims, dict) or set(claims) != keys:
        raise errors.EvidenceError(f"{type_} claims must have exactly the fields "
                                   f"{', '.join(sorted(keys))}")
    problems = check_claim_values(claims["measurement"], claims["fspf_tag"],
                                  claims["report_data"])
    if "uid" in keys:
        problems += check_ids(claims["uid"], claims["gid"])
    if claims["type"] != type_:
        problems.append(f"claims type must be {type_!r}")
    if not isinstance(claims["platform_id"], str) or not HEX64.fullmatch(claims["platform_id"]):
        problems.append("platform_id must be 64 lower-case hex digits")
    if problems:
        raise errors.EvidenceError(f"{type_} claims are malformed", details=problems)
    return claims


def parse_typed(evidence: bytes, type_: str, keys: frozenset[str],
                claim_keys: frozenset[str] = CLAIM_KEYS) -> dict[str, Any]:
    """The envelope of ``evidence`` if it is ``type_`` with exactly ``keys`` (unauthenticated)."""
    obj = parse_envelope(evidence)
    if obj["type"] != type_:
        raise errors.EvidenceError(f"evidence type is {obj['type']!r}, not {type_!r}")
    if set(obj) != keys:
        raise errors.EvidenceError(f"{type_} evidence has unexpected fields",
                                   details=[f"fields: {', '.join(sorted(obj))}"])
    obj["claims"] = parse_claims(obj["claims"], type_, claim_keys)
    return obj


def message(exc: errors.EvidenceError) -> str:
    """An evidence error as one reason line (message and details)."""
    return exc.message + "".join(f"; {d}" for d in exc.details)


RUNTIME_CONTEXT = b"cloister-runtime-claims-v1\0"


def runtime_binding(type_: str, measurement: str, fspf_tag: str | None,
                    uid: int | None = None, gid: int | None = None) -> bytes:
    """The 32 bytes a hardware report's data carries after ``report_data``: the runtime claims.

    ``SHA256(context ‖ len(type) ‖ type ‖ measurement ‖ tag [‖ u32(uid) ‖ u32(gid)])``
    where the tag is ``0x00`` when absent and ``0x01 ‖ tag`` when present (fixed
    lengths, so the encoding is unambiguous); the caller's uid and gid, as the LAS
    saw them, follow when given (always, for what a LAS quotes).  Inputs must be
    well-formed.
    """
    tag = b"\0" if fspf_tag is None else b"\1" + bytes.fromhex(fspf_tag)
    ids = b"" if uid is None or gid is None else struct.pack(">II", uid, gid)
    return hashlib.sha256(RUNTIME_CONTEXT + bytes([len(type_)]) + type_.encode()
                          + bytes.fromhex(measurement) + tag + ids).digest()
