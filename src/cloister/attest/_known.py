"""Whether the CAS knows the key that signed some evidence (pure: the known keys are inputs).

Simulation evidence is signed by a LAS's software key, TPM evidence without
an EK chain by whatever AK it carries: such claims ask for a known key
(:attr:`VerifiedClaims.requires_platform_pin`), and count only from a
platform the service pins (``platforms:``) or the session's owner enrolled
on the CAS (``cloister platform enroll``).
"""

from __future__ import annotations

from cloister.attest._plugin import VerifiedClaims


def platform_reason(claims: VerifiedClaims, *, service: str, pinned: frozenset[str],
                    enrolled: frozenset[str]) -> str | None:
    """Why ``claims`` come from a platform the CAS does not know, or None if it does.

    Pure: ``pinned`` is the service's ``platforms`` (lower-case hex) and
    ``enrolled`` the platform ids enrolled by the session's owner.  A service
    that pins platforms admits only those; otherwise evidence whose key only
    the CAS's knowledge vouches for (``requires_platform_pin``) needs an
    enrolled platform.  Pins are not echoed: they may come from secrets.
    """
    if pinned:
        if claims.platform_id in pinned:
            return None
        return (f"platform {claims.platform_id} not in the {len(pinned)} platform(s) "
                f"pinned by service {service}")
    if not claims.requires_platform_pin or claims.platform_id in enrolled:
        return None
    return (f"platform {claims.platform_id} is not enrolled: {claims.evidence_type} "
            f"evidence counts only from a quoting key the CAS knows; check that this is "
            f"your LAS, then `cloister platform enroll {claims.platform_id}` as the "
            f"session's owner, or list it under platforms of service {service}")


