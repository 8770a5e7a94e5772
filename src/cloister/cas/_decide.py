"""The attestation decision: pure, no I/O, every failure reported at once.

:func:`decide` answers one question — may the workload that produced
``evidence`` receive ``service``'s configuration?  It checks, in order:

1. **nonce** — the CAS nonce was known, unexpired and unused.  Single-use
   consumption is the store's job; the caller passes the outcome as
   ``nonce_ok`` (``True``, or the reason it failed).
2. **authenticity** — the verifier of the evidence type's plug-in accepts it
   (well-formed, validly signed, chained to its trusted root, collateral
   valid at ``now``).
3. **binding** — the evidence's report data equals ``SHA256(nonce ‖
   ephemeral public key)``, so the configuration sealed to that key can only
   be opened by the attested process.
4. **identity** — the measurement matches one of the service's attestation
   variants (every factor of a variant must hold; a variant that names only a
   ``signer`` cannot match evidence that carries no signer, such as
   ``simulation``), every reference value the policy sets under
   ``security.attestation`` (a plug-in's extension key such as ``tpm_pcrs``)
   holds for the claims as that key's plug-in checks it, evidence that
   counts only against a reference value (``requires_pins``, e.g. a launch
   measurement a CPU signs for any VM) has one set, the caller's uid and gid
   equal the service's ``uid``/``gid`` when pinned, the platform id is in
   ``platforms`` if any are listed — and evidence whose key only the CAS's
   knowledge vouches for (``requires_platform_pin``: simulation, TPM without
   an EK chain) comes from a listed or an enrolled platform
   (:func:`cloister.attest.platform_reason`; in mode ``none`` too),
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
from datetime import datetime
from typing import TYPE_CHECKING

from cloister import errors
from cloister.attest import (
    NO_COLLATERAL,
    Collateral,
    PolicyKey,
    VerifiedClaims,
    Verifier,
    evidence_type,
    platform_reason,
)
from cloister.attest import _registry as registry

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



#: the one answer to every refused anonymous attestation (the audit log keeps the reasons)
REFUSAL = "attestation refused"
REFUSAL_DETAILS = ("the CAS's audit log names every reason; ask its operator",)


def refusal(config_id: str, reasons: list[str], *,
            attested: bool = False) -> errors.AttestationError:
    """The error a refused attestation raises.

    To an anonymous caller one uniform answer, whatever the reasons: it learns
    neither whether the session exists nor anything of its policy.  To a caller
    whose evidence was accepted (``attested``: it is this service's workload) the
    reasons — the second factors or the singleton lease it lacks — one inline,
    several as details.
    """
    if not attested:
        return errors.AttestationError(REFUSAL, details=list(REFUSAL_DETAILS))
    if len(reasons) == 1:
        return errors.AttestationError(f"attestation of {config_id} refused: {reasons[0]}")
    return errors.AttestationError(
        f"attestation of {config_id} refused ({len(reasons)} reasons)", details=reasons
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
    now: datetime | None = None,
    collateral: Collateral = NO_COLLATERAL,
    verifiers: Mapping[str, Verifier] | None = None,
    policy_keys: Mapping[str, PolicyKey] | None = None,
    enrolled_platforms: frozenset[str] = frozenset(),
) -> Decision:
    """Decide whether ``evidence`` earns ``service``'s configuration (steps in the module doc).

    ``attestation`` is the session's ``security.attestation``; ``now`` and
    ``collateral`` go to the verifier (which reads neither clock nor disk);
    ``verifiers`` and ``policy_keys`` default to the plug-in registry's;
    ``enrolled_platforms`` are the platform ids the session's owner enrolled.
    Never raises on hostile input: malformed evidence is a reason like any other.
    """
    verifier_table = registry.verifiers() if verifiers is None else verifiers
    keys = registry.policy_keys() if policy_keys is None else policy_keys
    reasons: list[str] = []
    expected = hashlib.sha256(nonce + ephemeral_public_key).digest()
    none_mode = attestation.mode == "none"

    # (1) nonce: known, unexpired, unused — established by the caller's store
    if nonce_ok is not True:
        reasons.append(nonce_ok if isinstance(nonce_ok, str) and nonce_ok else NONCE_REASON)

    # (2) authenticity: the verifier for the declared evidence type
    claims = _authenticate(evidence, expected, verifier_table, reasons,
                           now=now, collateral=collateral)

    if claims is not None:
        # (3) binding: report data == SHA256(nonce ‖ ephemeral public key)
        binding = _binding_reason(claims, expected)
        if binding is not None:
            reasons.append(binding)

        # (4) identity: measurement, reference values, platform, fspf tag
        if not none_mode:
            reasons += _check_measurement(service, claims)
            reasons += _check_references(attestation, claims, keys)
            reasons += _check_ids(service, claims)
        # a known quoting key holds in mode none too: without it the claims are anyone's
        why = platform_reason(claims, service=service.name,
                              pinned=frozenset(p.lower() for p in service.platforms),
                              enrolled=enrolled_platforms)
        if why is not None:
            reasons.append(why)
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
    evidence: bytes, expected: bytes, table: Mapping[str, Verifier], reasons: list[str],
    *, now: datetime | None, collateral: Collateral,
) -> VerifiedClaims | None:
    try:
        type_ = evidence_type(evidence)
    except errors.EvidenceError as exc:
        reasons.append(f"evidence is malformed: {exc.message}")
        return None
    verifier = table.get(type_)
    if verifier is None:
        known = ", ".join(sorted(table)) or "none"
        reasons.append(f"evidence type {type_!r} has no verifier on this CAS (known: {known})")
        return None
    try:
        result = verifier.verify(evidence, expected_report_data=expected, now=now,
                                 collateral=collateral)
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


def _check_ids(service: Service, claims: VerifiedClaims) -> list[str]:
    """The service's pinned ``uid``/``gid`` against the caller's, as the LAS saw them."""
    reasons = []
    for what, want, got in (("uid", service.uid, claims.uid), ("gid", service.gid, claims.gid)):
        if want is None:
            continue
        if got is None:
            reasons.append(f"service {service.name} pins {what} {want}, but "
                           f"{claims.evidence_type} evidence carries no {what}")
        elif got != want:
            reasons.append(f"the caller runs as {what} {got}, service {service.name} "
                           f"requires {what} {want}")
    return reasons


def _check_references(
    attestation: AttestationSecurity, claims: VerifiedClaims, keys: Mapping[str, PolicyKey]
) -> list[str]:
    """Every plug-in reference value the policy sets, checked by the plug-in that owns it."""
    reasons = []
    for name, value in sorted(attestation.extensions.items()):
        key = keys.get(name)
        if key is None:  # fail closed: a pin nobody checks must not pass silently
            reasons.append(f"security.attestation.{name} is set, but no evidence type on this "
                           "CAS checks it")
            continue
        try:
            reasons += key.check(value, claims)
        except Exception:  # a plug-in bug must refuse, never accept or crash the CAS
            reasons.append(f"the check of security.attestation.{name} failed on this evidence")
    if claims.requires_pins and not any(p in attestation.extensions for p in claims.requires_pins):
        wanted = " or ".join(f"security.attestation.{p}" for p in claims.requires_pins)
        reasons.append(f"{claims.evidence_type} evidence counts only against reference values: "
                       f"set {wanted} (the hardware signs whatever was launched)")
    return reasons


def _check_policy(attestation: AttestationSecurity, claims: VerifiedClaims) -> list[str]:
    if attestation.mode != "hardware":
        return [f"security.attestation.mode {attestation.mode} is not supported by cloister: "
                "use hardware (the default) or none"]
    return [f"{why} not tolerated: add {toleration} to security.attestation.tolerate"
            for toleration, why in sorted(claims.needs_tolerations.items())
            if toleration not in attestation.tolerate]
