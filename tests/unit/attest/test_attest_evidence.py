"""Evidence format and simulation verifier: authentic evidence passes, altered fails."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister import errors
from cloister.attest import (
    VERIFIERS,
    SimulationVerifier,
    VerifiedClaims,
    Verifier,
    _evidence,
    canonical_json,
    evidence_type,
    report_data,
    simulation,
)

MEASUREMENT = "ab" * 32
TAG = "cd" * 16
RD = hashlib.sha256(b"nonce" + b"k" * 32).digest()


def _evidence_bytes(key: Ed25519PrivateKey, **overrides: object) -> bytes:
    fields: dict[str, object] = {
        "measurement": MEASUREMENT, "fspf_tag": TAG, "report_data_hex": RD.hex(),
        "uid": 1000, "gid": 1000,
    }
    fields.update(overrides)
    return simulation.sign_simulation(key, **fields)  # type: ignore[arg-type]


def _edit(evidence: bytes, change: object) -> bytes:
    obj = json.loads(evidence)
    change(obj)  # type: ignore[operator]
    return canonical_json(obj)


def test_round_trip_and_documented_shape() -> None:
    key = Ed25519PrivateKey.generate()
    evidence = _evidence_bytes(key)
    obj = json.loads(evidence)
    assert evidence == canonical_json(obj)  # the wire form is canonical JSON
    assert set(obj) == {"format", "version", "type", "claims", "public_key", "signature"}
    assert (obj["format"], obj["version"], obj["type"]) == ("cloister-evidence", 1, "simulation")
    der = base64.b64decode(obj["public_key"])
    assert obj["claims"]["platform_id"] == hashlib.sha256(der).hexdigest()
    # the signature covers the documented bytes
    key.public_key().verify(base64.b64decode(obj["signature"]),
                            b"cloister-evidence-v1\0" + canonical_json(obj["claims"]))
    assert evidence_type(evidence) == "simulation"

    claims = SimulationVerifier().verify(evidence, expected_report_data=RD)
    assert isinstance(claims, VerifiedClaims)
    assert (claims.measurement, claims.fspf_tag, claims.report_data) == (MEASUREMENT, TAG, RD)
    assert claims.needs_tolerations == {"debug-mode": "evidence type simulation"}


def test_report_data_is_sha256_of_nonce_and_key() -> None:
    nonce, key = os.urandom(32), os.urandom(32)
    assert report_data(nonce, key) == hashlib.sha256(nonce + key).digest()


def test_registry_holds_simulation_behind_the_protocol() -> None:
    assert isinstance(VERIFIERS["simulation"], Verifier)
    assert VERIFIERS["simulation"].evidence_type == "simulation"


def _flip_signature(obj: dict) -> None:  # type: ignore[type-arg]
    sig = bytearray(base64.b64decode(obj["signature"]))
    sig[0] ^= 1
    obj["signature"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize(("change", "reason"), [
    (_flip_signature, "signature is invalid"),
    (lambda o: o["claims"].update(measurement="ef" * 32), "signature is invalid"),
    (lambda o: o["claims"].update(fspf_tag=None), "signature is invalid"),
    (lambda o: o["claims"].update(platform_id="00" * 32), "not the hash of the key"),
    (lambda o: o["claims"].update(measurement="AB" * 32), "lower-case hex"),
    (lambda o: o.update(extra=1), "unexpected fields"),
    (lambda o: o["claims"].pop("fspf_tag"), "exactly the fields"),
    (lambda o: o.update(version=2), "version 1"),
    (lambda o: o.update(public_key="!!"), "not base64"),
])
def test_altered_evidence_is_refused(change: object, reason: str) -> None:
    evidence = _edit(_evidence_bytes(Ed25519PrivateKey.generate()), change)
    result = SimulationVerifier().verify(evidence, expected_report_data=RD)
    assert isinstance(result, list) and any(reason in r for r in result), result


def test_evidence_from_another_key_claiming_this_platform_is_refused() -> None:
    honest, attacker = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    honest_id = json.loads(_evidence_bytes(honest))["claims"]["platform_id"]
    forged = json.loads(_evidence_bytes(attacker))
    forged["claims"]["platform_id"] = honest_id
    forged["signature"] = base64.b64encode(attacker.sign(
        simulation.SIGNATURE_CONTEXT + canonical_json(forged["claims"]))).decode()
    result = SimulationVerifier().verify(canonical_json(forged), expected_report_data=RD)
    assert isinstance(result, list) and "another platform key" in result[0]


@pytest.mark.parametrize("evidence", [
    b"", b"\xff\xfe", b"[]", b'{"format": "cloister-evidence", "version": 1}',
    b'{"type": "simulation", "type": "tpm"}', b" " * (_evidence.MAX_EVIDENCE_BYTES + 1),
])
def test_garbage_is_a_reason_never_an_exception(evidence: bytes) -> None:
    result = SimulationVerifier().verify(evidence, expected_report_data=RD)
    assert isinstance(result, list) and result
    with pytest.raises(errors.EvidenceError):
        evidence_type(evidence)


def test_las_refuses_to_sign_malformed_claims() -> None:
    with pytest.raises(errors.EvidenceError) as err:
        _evidence_bytes(Ed25519PrivateKey.generate(), measurement="xyz", report_data_hex="00")
    assert len(err.value.details) == 2
