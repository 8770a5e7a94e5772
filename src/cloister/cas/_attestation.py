"""Attestation endpoints: hand out nonces, decide on evidence, release sealed configuration.

Protocol (all JSON over HTTPS, no client certificate needed — the evidence is
the credential):

1. ``POST /v1/attest/nonce`` → 201 ``{"nonce": <64 hex>, "expires_in": seconds}``.
   Nonces are stateless (:mod:`cloister.cas._nonces`): MACed issue time and
   randomness, single use, short-lived; any CAS replica sharing the store
   accepts them.  Both endpoints are rate limited per client address (429
   with ``Retry-After``; ``Limits.nonce_rate`` …).
2. ``POST /v1/attest/config`` with ``{"config_id": "session/service",
   "nonce": <hex>, "public_key": <hex X25519>, "evidence": <base64>}`` →
   200 ``{"sealed_config": <base64>}`` (see :mod:`cloister.cas._release`),
   sealed to ``public_key``; or 403 with :data:`~cloister.cas._decide.REFUSAL` — one uniform answer
   whatever the reason, so an anonymous caller learns neither whether the
   session exists nor anything of its policy.  Only a caller whose evidence
   was accepted hears which second factor (SCONE's OTP, access token) or
   singleton lease it still lacks.

Every decision is audited and counted; the audit names every reason, never a
secret.  What a session version releases is derived once and kept in memory
(:mod:`cloister.cas._release_cache`) after a release was allowed; the decision
itself runs for every attestation.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloister import errors
from cloister.attest import NO_COLLATERAL, seal_to
from cloister.cas._decide import decide, refusal
from cloister.cas._http import Request, Response
from cloister.cas._nonces import MemorySpent, NonceIssuer
from cloister.cas._platforms import enrolled_by
from cloister.cas._release import parse_config_id
from cloister.cas._release_cache import ReleaseCache
from cloister.cas._service_gates import admit, presented_token, split_otp
from cloister.policy._model import Invalid
from cloister.policy._model_base import MAX_SESSION_NAME

if TYPE_CHECKING:
    from cloister.cas._app import AppContext

#: the longest config id: the longest session name, "/", the longest service name; a
#: longer one is refused before it reaches the audit log
MAX_CONFIG_ID = MAX_SESSION_NAME + 1 + 128
_EXTENSION = "attestation.nonces"
_RELEASES = "attestation.releases"
#: ``ctx.extensions`` key of the :class:`cloister.attest.Collateral` verifiers get
COLLATERAL_EXTENSION = "attestation.collateral"


def _nonces(ctx: AppContext) -> NonceIssuer:
    issuer = ctx.extensions.get(_EXTENSION)
    if issuer is None:  # an app without a CAS server: a key and spent set of its own
        fallback = NonceIssuer(secrets.token_bytes(32), MemorySpent())
        issuer = ctx.extensions.setdefault(_EXTENSION, fallback)
    assert isinstance(issuer, NonceIssuer)
    return issuer


def post_nonce(ctx: AppContext, req: Request) -> Response:
    issuer = _nonces(ctx)
    return Response.json(201, {"nonce": issuer.issue().hex(),
                               "expires_in": int(issuer.lifetime)})


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise errors.RequestError(f"attestation request lacks string field {name!r}")
    return value


def _decode(body: dict[str, Any], name: str, decoder: Any) -> bytes:
    try:
        data: bytes = decoder(_field(body, name))
    except (ValueError, binascii.Error):
        raise errors.RequestError(f"attestation request field {name!r} is not valid") from None
    return data


def _parse(req: Request) -> tuple[str, bytes, bytes, bytes, str | None]:
    try:
        body = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise errors.RequestError("attestation request is not JSON") from None
    if not isinstance(body, dict):
        raise errors.RequestError("attestation request must be a JSON object")
    config_id = _field(body, "config_id")
    if len(config_id) > MAX_CONFIG_ID:
        raise errors.RequestError(
            f"config id is {len(config_id)} characters long; the longest possible is "
            f"{MAX_CONFIG_ID} (a session name and a service name)"
        )
    return (
        config_id,
        _decode(body, "nonce", bytes.fromhex),
        _decode(body, "public_key", bytes.fromhex),
        _decode(body, "evidence", lambda s: base64.b64decode(s, validate=True)),
        presented_token(body),
    )


def _releases(ctx: AppContext) -> ReleaseCache:
    cache = ctx.extensions.get(_RELEASES)
    if cache is None:
        fresh = ReleaseCache(ctx.sessions, size=ctx.sessions.limits.release_cache_sessions)
        cache = ctx.extensions.setdefault(_RELEASES, fresh)
    assert isinstance(cache, ReleaseCache)
    return cache


def post_config(ctx: AppContext, req: Request) -> Response:
    config_id, nonce, public_key, evidence, token = _parse(req)
    config_id, otp = split_otp(config_id)  # SCONE_CONFIG_ID=session/service@OTP
    # consume first: a nonce is spent by any attempt, so a refused one cannot be replayed
    nonce_ok = _nonces(ctx).check(nonce)
    session_name, service_name = parse_config_id(config_id)
    unknown = ["config id is not known to this CAS"]
    releases = _releases(ctx)
    try:
        release = releases.get(session_name)
    except errors.NotFound:
        return _refuse(
            ctx,
            config_id,
            session_name,
            unknown,
            audit=[f"session {session_name!r} does not exist"],
        )
    except errors.SecretError as err:
        return _refuse(
            ctx,
            config_id,
            session_name,
            [f"the configuration of {config_id} cannot be released now (see the CAS audit log)"],
            audit=err.lines(),
        )
    session = release.session
    service = session.service(service_name)
    if service is None:
        return _refuse(
            ctx,
            config_id,
            session_name,
            unknown,
            audit=[f"session {session_name!r} has no service {service_name!r}"],
        )
    try:
        resolved = release.resolved(service)
    except (Invalid, errors.SecretError) as err:
        return _refuse(
            ctx,
            config_id,
            session_name,
            [f"the attestation policy of {config_id} cannot be evaluated (see the CAS audit log)"],
            audit=[f"platforms or fspf_tag do not resolve to hex: {err}"],
        )
    decision = decide(
        service=resolved,
        attestation=session.security.attestation,
        evidence=evidence,
        nonce=nonce,
        nonce_ok=nonce_ok,
        ephemeral_public_key=public_key,
        now=datetime.now(UTC),
        collateral=ctx.extensions.get(COLLATERAL_EXTENSION, NO_COLLATERAL),
        enrolled_platforms=enrolled_by(ctx, release.owner),
    )
    # second factors and singletons (SCONE): spent or taken only when all else passed
    factors, lease = admit(ctx, session, service, release.values, otp=otp,
                           token=token, accepted=decision.accepted)
    if not decision.accepted:
        return _refuse(ctx, config_id, session_name, decision.reasons + factors)
    if factors:  # the caller proved to be this service's workload: it may hear which gate
        return _refuse(ctx, config_id, session_name, factors, attested=True)
    sealed = seal_to(public_key, release.payload(service, resolved, lease))
    releases.keep(release)  # allowed: the next attestation of this version starts here
    claims = decision.claims
    ctx.audit.record(  # durable: nothing is released that the audit log does not show
        caller=None,
        action="attest",
        session=session_name,
        decision="allow",
        durable=True,
        service=service_name,
        measurement=claims.measurement if claims else None,
        platform=claims.platform_id if claims else None,
        uid=claims.uid if claims else None,
        gid=claims.gid if claims else None,
    )
    ctx.metrics.count_attestation("allow")
    return Response.json(200, {"sealed_config": base64.b64encode(sealed).decode("ascii")})


def _refuse(
    ctx: AppContext,
    config_id: str,
    session: str,
    reasons: list[str],
    *,
    audit: list[str] | None = None,
    attested: bool = False,
) -> Response:
    """Audit every reason (``audit`` adds the full story) and raise the uniform refusal —
    or, to a caller whose evidence was accepted (``attested``), the second factors or
    singleton lease it still lacks: those are its own service's policy."""
    ctx.audit.record(
        caller=None,
        action="attest",
        session=session,
        decision="deny",
        reason="; ".join([*reasons, *(audit or [])]),
        config_id=config_id,
    )
    ctx.metrics.count_attestation("deny")
    raise refusal(config_id, reasons, attested=attested)
