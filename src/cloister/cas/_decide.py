"""The attestation decision: pure, no I/O, every failure reported at once.

:func:`decide` answers one question — may the workload that produced
``evidence`` receive ``service``'s configuration?  It checks, in order:

1. **nonce** — the CAS nonce was known, unexpired and unused.  Single-use
   consumption is the store's job; the caller passes the outcome as
   ``nonce_ok`` (``True``, or the reason it failed).
2. **authenticity** — the verifier registered for the evidence's declared
   type accepts it (well-formed, validly signed).
3. **binding** — the evidence's report data equals ``SHA256(nonce ‖
   ephemeral public key)``, so the configuration sealed to that key can only
   be opened by the attested process.
4. **identity** — the measurement matches one of the service's attestation
   variants (every factor of a variant must hold; a variant that names only a
   ``signer`` cannot match evidence that carries no signer, such as
   ``simulation``), PCR values pinned by ``security.attestation.tpm_pcrs``
   equal the authenticated ones (evidence without PCRs fails a pin), the
   platform id is in ``platforms`` if any are listed — and evidence whose key
   only a pin vouches for (``requires_platform_pin``, e.g. TPM without an EK
   chain) needs ``platforms`` listed,
   and the fspf tag equals ``fspf_tag`` when both the policy and the evidence
   carry one (evidence without a tag is allowed: the attested runtime then
   verifies the protected tree against the released ``fspf_tag`` itself).
5. **policy** — ``security.attestation`` allows the evidence: every
   toleration the verifier asks for (``debug-mode`` for ``simulation``) is in
   ``tolerate``.

With ``security.attestation.mode: none`` attestation of code and hardware is
off, as in SCONE: steps 4 (measurement and platform) and 5 are skipped, but
the nonce, authenticity, binding and the fspf tag still hold.  Steps never
short-circuit each other except where a later one has nothing trustworthy
to look at (no authenticated claims after a failed step 2); the
:class:`Decision` lists every reason found.  The caller must pass a service
whose ``$$SCONE::…$$`` references are already resolved; an unresolved one
matches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloister import errors
from cloister.attest import VERIFIERS, VerifiedClaims, Verifier, evidence_type

if TYPE_CHECKING:
    from cloister.policy import AttestationSecurity, Service, Signer

NONCE_REASON = "nonce is unknown, expired or already used: request a fresh nonce and attest again"


@dataclass(frozen=True)
class Decision:
    """``accepted`` is True exactly when ``reasons`` is empty.

    ``claims`` are the authenticated claims (for the audit log), or None when
    step 2 failed.
    """

    accepted: bool
    reasons: list[str]
    claims: VerifiedClaims | None = None

    def error(self, config_id: str) -> errors.AttestationError:
        """The refusal as an error: ``details`` holds every reason, in check order."""
        count = len(self.reasons)
        return errors.AttestationError(
            f"attestation of {config_id} refused ({count} reason{'s' if count != 1 else ''})",
            details=self.reasons,
        )


def _short(hex_value: str) -> str:
    return hex_value[:12] + "…" if len(hex_value) > 12 else hex_value


def _listed(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_short(v) for v in values) + "]"


def _signer_reason(index: int, signer: Signer, claims: VerifiedClaims) -> str | None:
    """Why ``signer`` (of variant ``index``) does not match ``claims``, or None if it does."""
    if claims.mrsigner is None:
        return (f"attestation variant {index + 1} requires signer {_short(signer.mrsigner)}, "
                f"which {claims.evidence_type} evidence does not carry")
    svn = claims.isvsvn
    if (
        claims.mrsigner != signer.mrsigner.lower()
        or (signer.isvprodid is not None and claims.isvprodid != signer.isvprodid)
        or (signer.isvsvn_min is not None and (svn is None or svn < signer.isvsvn_min))
        or (signer.isvsvn_max is not None and (svn is None or svn > signer.isvsvn_max))
    ):
        return f"attestation variant {index + 1}: signer {_short(signer.mrsigner)} does not match"
    return None


def _check_measurement(service: Service, claims: VerifiedClaims) -> list[str]:
    """Empty when some variant matches in every factor; else why none does."""
    if not service.attestation:
        return [f"service {service.name} lists no measurement: add the output of "
                "`cloister measure` to its mrenclaves"]
    signer_reasons: list[str] = []
    for index, variant in enumerate(service.attestation):
        if variant.mrenclaves and claims.measurement not in (m.lower() for m in variant.mrenclaves):
            continue
        if variant.signer is None:
            return []
        why = _signer_reason(index, variant.signer, claims)
        if why is None:
            return []
        signer_reasons.append(why)
    reasons = []
    if service.mrenclaves and claims.measurement not in service.mrenclaves:
        reasons.append(f"measurement {claims.measurement} not in {_listed(service.mrenclaves)} "
                       f"of service {service.name}: if this code is trusted, add it to mrenclaves")
    return reasons + signer_reasons


def _binding_reason(claims: VerifiedClaims, expected: bytes) -> str | None:
    if hmac.compare_digest(claims.report_data, expected):
        return None
    return ("report data is not SHA256(nonce ‖ ephemeral public key): the evidence is bound to "
            "another key or nonce")


def decide(
    *,
    service: Service,
    attestation: AttestationSecurity,
    evidence: bytes,
    nonce: bytes,
    nonce_ok: bool | str,
    ephemeral_public_key: bytes,
    verifiers: Mapping[str, Verifier] | None = None,
) -> Decision:
    """Decide whether ``evidence`` earns ``service``'s configuration (steps in the module doc).

    ``attestation`` is the session's ``security.attestation``; ``verifiers``
    defaults to :data:`cloister.attest.VERIFIERS`.  Never raises on hostile
    input: malformed evidence is a reason like any other.
    """
    registry = VERIFIERS if verifiers is None else verifiers
    reasons: list[str] = []
    expected = hashlib.sha256(nonce + ephemeral_public_key).digest()
    none_mode = attestation.mode == "none"

    # (1) nonce: known, unexpired, unused — established by the caller's store
    if nonce_ok is not True:
        reasons.append(nonce_ok if isinstance(nonce_ok, str) and nonce_ok else NONCE_REASON)

    # (2) authenticity: the verifier for the declared evidence type
    claims = _authenticate(evidence, expected, registry, reasons)

    if claims is not None:
        # (3) binding: report data == SHA256(nonce ‖ ephemeral public key)
        binding = _binding_reason(claims, expected)
        if binding is not None:
            reasons.append(binding)

        # (4) identity: measurement, pinned PCRs, platform, fspf tag
        if not none_mode:
            reasons += _check_measurement(service, claims)
            platforms = tuple(p.lower() for p in service.platforms)
            reasons += _check_pcrs(attestation, claims)
            if claims.requires_platform_pin and not platforms:
                reasons.append(
                    f"{claims.evidence_type} evidence is trusted only for a platform the policy "
                    f"pins: list the attestation key {claims.platform_id} under platforms of "
                    f"service {service.name} after checking it (cloister las enroll prints it)"
                )
            if platforms and claims.platform_id not in platforms:
                # the pins are not echoed: they may come from secrets ($$SCONE::…$$)
                reasons.append(f"platform {claims.platform_id} not in the {len(platforms)} "
                               f"platform(s) pinned by service {service.name}")
        # evidence without a tag: the measured runtime verifies the tree against the
        # released fspf_tag itself before running any of it (as SCONE's runtime does)
        if (
            service.fspf_tag is not None
            and claims.fspf_tag is not None
            and claims.fspf_tag != service.fspf_tag.lower()
        ):
            reasons.append(f"evidence carries fspf tag {claims.fspf_tag}, service "
                           f"{service.name} requires another fspf_tag (see its policy)")

        # (5) policy: security.attestation allows this evidence
        if not none_mode:
            reasons += _check_policy(attestation, claims)

    return Decision(accepted=not reasons, reasons=reasons, claims=claims)


def _authenticate(
    evidence: bytes, expected: bytes, registry: Mapping[str, Verifier], reasons: list[str]
) -> VerifiedClaims | None:
    try:
        type_ = evidence_type(evidence)
    except errors.EvidenceError as exc:
        reasons.append(f"evidence is malformed: {exc.message}")
        return None
    verifier = registry.get(type_)
    if verifier is None:
        known = ", ".join(sorted(registry)) or "none"
        reasons.append(f"evidence type {type_!r} has no verifier on this CAS (known: {known})")
        return None
    try:
        result = verifier.verify(evidence, expected_report_data=expected)
    except Exception:  # a plug-in bug must refuse, never accept or crash the CAS
        reasons.append(f"the {type_} verifier failed on this evidence")
        return None
    if isinstance(result, VerifiedClaims):
        if result.evidence_type != type_:
            reasons.append(f"the {type_} verifier returned claims of type {result.evidence_type}")
            return None
        return result
    reasons.extend(result or [f"the {type_} verifier refused the evidence"])
    return None


def _check_pcrs(attestation: AttestationSecurity, claims: VerifiedClaims) -> list[str]:
    """Pinned PCRs (``security.attestation.tpm_pcrs``) against the authenticated values."""
    reasons = []
    for index, want in attestation.tpm_pcrs:
        got = claims.pcrs.get(index)
        if got is None:
            reasons.append(f"PCR sha256:{index} is pinned by security.attestation.tpm_pcrs, but "
                           f"{claims.evidence_type} evidence does not carry it")
        elif got != want:
            reasons.append(f"PCR sha256:{index} is {got}, security.attestation.tpm_pcrs "
                           f"requires {want}")
    return reasons


def _check_policy(attestation: AttestationSecurity, claims: VerifiedClaims) -> list[str]:
    if attestation.mode != "hardware":
        return [f"security.attestation.mode {attestation.mode} is not supported by cloister: "
                "use hardware (the default) or none"]
    return [f"{why} not tolerated: add {toleration} to security.attestation.tolerate"
            for toleration, why in sorted(claims.needs_tolerations.items())
            if toleration not in attestation.tolerate]
