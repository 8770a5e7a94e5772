"""Verifiers: one per evidence type, behind one small interface.

A :class:`Verifier` is pure (no I/O, no clock, no global state): given the
evidence bytes it either returns the :class:`VerifiedClaims` it could
authenticate or a list of reasons why it could not.  The attestation
decision (:mod:`cloister.cas._decide`) looks verifiers up by the evidence's
declared type in :data:`VERIFIERS`, so a hardware-rooted type (TPM 2.0
quote, SEV-SNP or TDX report, SGX DCAP quote) is added by registering one
more verifier — the decision code does not change.

Trust model: **simulation** evidence is signed by the LAS with a software
key; it proves which code was launched to someone who trusts the host, and
nothing against a host administrator.  Its verifier therefore asks for the
``debug-mode`` toleration (:attr:`VerifiedClaims.needs_tolerations`), and
the decision accepts it only when ``security.attestation.tolerate`` contains
``debug-mode`` or ``security.attestation.mode`` is ``none``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloister import errors
from cloister.attest import _evidence


@dataclass(frozen=True)
class VerifiedClaims:
    """What a verifier authenticated.  Hex fields are lower-case.

    ``report_data`` is the 32 bytes the evidence binds (the decision compares
    it with ``SHA256(nonce ‖ ephemeral public key)``).  ``needs_tolerations``
    maps each ``security.attestation.tolerate`` entry this evidence requires
    to a short description of why (e.g. ``{"debug-mode": "evidence type
    simulation"}``).  The ``mrsigner``/``isvprodid``/``isvsvn`` factors are
    set only by evidence types that carry a signer identity (SGX); a policy
    variant that names a ``signer`` cannot match evidence without one.
    """

    evidence_type: str
    measurement: str
    platform_id: str
    report_data: bytes
    fspf_tag: str | None = None
    mrsigner: str | None = None
    isvprodid: int | None = None
    isvsvn: int | None = None
    needs_tolerations: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: True when nothing but the policy's ``platforms`` pin ties the signing key to real
    #: hardware (a TPM quote without a verified EK chain): such evidence is refused
    #: unless the service lists its platform
    requires_platform_pin: bool = False
    #: authenticated SHA-256 PCR values (index → 64 hex) for evidence types that quote PCRs
    pcrs: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))


@runtime_checkable
class Verifier(Protocol):
    """Checks one evidence type.  Must be pure and must not raise on hostile input.

    ``expected_report_data`` is the value the relying party demands.  A
    verifier whose evidence carries report data in clear returns it in the
    claims and leaves the comparison to the decision's binding step; one
    whose format only folds it into the signed structure (e.g. a TPM quote's
    qualifying data) checks it inside :meth:`verify` and returns a reason.
    """

    evidence_type: str

    def verify(
        self, evidence: bytes, *, expected_report_data: bytes
    ) -> VerifiedClaims | list[str]: ...


class SimulationVerifier:
    """Verifies ``simulation`` evidence signed by a LAS platform key (Ed25519).

    It checks that the evidence is well-formed, that ``platform_id`` is the
    hash of the enclosed public key, and that the signature over the claims
    is valid under that key.  It cannot know whether the key belongs to an
    honest LAS: pin it with the service's ``platforms:`` list.
    """

    evidence_type = _evidence.SIMULATION

    def verify(
        self, evidence: bytes, *, expected_report_data: bytes
    ) -> VerifiedClaims | list[str]:
        # expected_report_data is compared by the decision's binding step:
        # simulation evidence carries report_data in clear.
        del expected_report_data
        try:
            claims, der, signature = _evidence.parse_simulation(evidence)
        except errors.EvidenceError as exc:
            return [f"{exc.message}" + "".join(f"; {d}" for d in exc.details)]
        if not hmac.compare_digest(_evidence.platform_id(der), claims["platform_id"]):
            return ["evidence platform_id is not the hash of the key that signed it "
                    "(evidence from another platform key)"]
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError):
            return ["evidence public_key is not a valid DER public key"]
        if not isinstance(key, Ed25519PublicKey):
            return ["evidence public_key is not an Ed25519 key"]
        try:
            key.verify(signature, _evidence.SIGNATURE_CONTEXT + _evidence.canonical_json(claims))
        except InvalidSignature:
            return [f"evidence signature is invalid for platform {claims['platform_id'][:12]}… "
                    "(the claims were altered or signed by another key)"]
        return VerifiedClaims(
            evidence_type=_evidence.SIMULATION,
            measurement=claims["measurement"],
            platform_id=claims["platform_id"],
            report_data=bytes.fromhex(claims["report_data"]),
            fspf_tag=claims["fspf_tag"],
            needs_tolerations=MappingProxyType(
                {"debug-mode": f"evidence type {_evidence.SIMULATION}"}
            ),
        )


#: evidence type → verifier; register hardware-rooted types here
VERIFIERS: dict[str, Verifier] = {_evidence.SIMULATION: SimulationVerifier()}
