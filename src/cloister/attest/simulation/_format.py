"""``simulation`` evidence: runtime claims signed by the LAS's software key (Ed25519).

Envelope (see :mod:`cloister.attest._evidence`)::

    {"format": "cloister-evidence", "version": 1, "type": "simulation",
     "claims": {"type": "simulation", "measurement", "fspf_tag", "report_data",
                "platform_id", "uid", "gid"},
     "public_key": "<base64 of the platform key's DER SubjectPublicKeyInfo>",
     "signature": "<base64 Ed25519 signature>"}

The signature covers ``b"cloister-evidence-v1\\0" + canonical_json(claims)``;
``platform_id`` is the SHA-256 hex of the DER SPKI of the signing key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister import errors
from cloister.attest import _evidence

SIMULATION = "simulation"
#: domain separation of the signed bytes (never reuse the key for anything else)
SIGNATURE_CONTEXT = b"cloister-evidence-v1\0"
_KEYS = frozenset({"format", "version", "type", "claims", "public_key", "signature"})


def sign_simulation(
    key: Ed25519PrivateKey, *, measurement: str, fspf_tag: str | None, report_data_hex: str,
    uid: int, gid: int,
) -> bytes:
    """Simulation evidence over the given claims (what the LAS measured of its caller, and
    the caller's uid and gid), signed by ``key`` (the LAS platform key)."""
    problems = _evidence.check_claim_values(measurement, fspf_tag, report_data_hex)
    problems += _evidence.check_ids(uid, gid)
    if problems:
        raise errors.EvidenceError("cannot quote malformed claims", details=problems)
    der = _evidence.spki_der(key.public_key())
    claims = {
        "type": SIMULATION,
        "measurement": measurement,
        "fspf_tag": fspf_tag,
        "report_data": report_data_hex,
        "platform_id": _evidence.platform_id(der),
        "uid": uid,
        "gid": gid,
    }
    signature = key.sign(SIGNATURE_CONTEXT + _evidence.canonical_json(claims))
    return _evidence.canonical_json({
        "format": _evidence.FORMAT,
        "version": _evidence.VERSION,
        "type": SIMULATION,
        "claims": claims,
        "public_key": base64.b64encode(der).decode(),
        "signature": base64.b64encode(signature).decode(),
    })


def parse_simulation(evidence: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """``(claims, public key DER, signature)`` of simulation evidence, shape-checked only.

    Nothing here is authenticated: the caller verifies the signature.
    """
    obj = _evidence.parse_typed(evidence, SIMULATION, _KEYS)
    try:
        der = base64.b64decode(obj["public_key"], validate=True)
        signature = base64.b64decode(obj["signature"], validate=True)
    except (TypeError, binascii.Error):
        raise errors.EvidenceError("evidence public_key or signature is not base64") from None
    return obj["claims"], der, signature
