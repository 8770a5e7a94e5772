"""The ``simulation`` verifier.

It checks, collecting every failure: (1) the evidence is well-formed,
(2) ``platform_id`` is the hash of the enclosed public key, (3) the key is
Ed25519, (4) the signature over the claims is valid under it.

Trust model: **simulation** evidence is signed by the LAS with a software
key; it proves which code was launched to someone who trusts the host, and
nothing against a host administrator.  Its verifier therefore asks for the
``debug-mode`` toleration (:attr:`VerifiedClaims.needs_tolerations`), and
the decision accepts it only when ``security.attestation.tolerate`` contains
``debug-mode`` or ``security.attestation.mode`` is ``none``.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloister import errors
from cloister.attest import _evidence
from cloister.attest._plugin import NO_COLLATERAL, Collateral, VerifiedClaims
from cloister.attest.simulation._format import SIGNATURE_CONTEXT, SIMULATION, parse_simulation


class SimulationVerifier:
    """Verifies ``simulation`` evidence signed by a LAS platform key (Ed25519).

    It checks that the evidence is well-formed, that ``platform_id`` is the
    hash of the enclosed public key, and that the signature over the claims
    is valid under that key.  It cannot know whether the key belongs to an
    honest LAS, so the claims ask for a known key (``requires_platform_pin``):
    the decision admits them only from a platform the service pins or the
    session's owner enrolled (:func:`cloister.attest.platform_reason`).
    """

    evidence_type = SIMULATION

    def verify(
        self,
        evidence: bytes,
        *,
        expected_report_data: bytes,
        now: datetime | None = None,
        collateral: Collateral = NO_COLLATERAL,
    ) -> VerifiedClaims | list[str]:
        # expected_report_data is compared by the decision's binding step:
        # simulation evidence carries report_data in clear; no time or collateral needed
        del expected_report_data, now, collateral
        # (1) well-formed
        try:
            claims, der, signature = parse_simulation(evidence)
        except errors.EvidenceError as exc:
            return [_evidence.message(exc)]
        # (2) platform id is the key's hash
        if not hmac.compare_digest(_evidence.platform_id(der), claims["platform_id"]):
            return ["evidence platform_id is not the hash of the key that signed it "
                    "(evidence from another platform key)"]
        # (3) an Ed25519 key
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError):
            return ["evidence public_key is not a valid DER public key"]
        if not isinstance(key, Ed25519PublicKey):
            return ["evidence public_key is not an Ed25519 key"]
        # (4) the signature over the claims
        try:
            key.verify(signature, SIGNATURE_CONTEXT + _evidence.canonical_json(claims))
        except InvalidSignature:
            return [f"evidence signature is invalid for platform {claims['platform_id'][:12]}… "
                    "(the claims were altered or signed by another key)"]
        return VerifiedClaims(
            evidence_type=SIMULATION,
            measurement=claims["measurement"],
            platform_id=claims["platform_id"],
            report_data=bytes.fromhex(claims["report_data"]),
            fspf_tag=claims["fspf_tag"],
            uid=claims["uid"],
            gid=claims["gid"],
            requires_platform_pin=True,
            needs_tolerations=MappingProxyType(
                {"debug-mode": f"evidence type {SIMULATION}"}
            ),
        )


