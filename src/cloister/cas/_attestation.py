"""Attestation endpoints: hand out nonces, decide on evidence, release sealed configuration.

Protocol (all JSON over HTTPS, no client certificate needed — the evidence is
the credential):

1. ``POST /v1/attest/nonce`` → 201 ``{"nonce": <64 hex>, "expires_in": seconds}``.
   Nonces are random, single use and short-lived; they live in memory only,
   so a CAS restart invalidates outstanding ones (the runtime retries).
2. ``POST /v1/attest/config`` with ``{"config_id": "session/service",
   "nonce": <hex>, "public_key": <hex X25519>, "evidence": <base64>}`` →
   200 ``{"sealed_config": <base64>}`` (see :mod:`cloister.cas._release`),
   sealed to ``public_key``; or 403 with every reason in ``details``.

Every decision is audited and counted; the audit names the reasons, never a
secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloister import errors
from cloister.attest import NO_COLLATERAL, seal_to
from cloister.cas._decide import decide
from cloister.cas._http import Request, Response
from cloister.cas._release import build_config, parse_config_id, resolve_service
from cloister.policy._model import Invalid
from cloister.secrets import SecretValue

if TYPE_CHECKING:
    from cloister.cas._app import AppContext

NONCE_TTL = 60.0
#: outstanding nonces kept at most; beyond it new ones are refused (503) until some expire
MAX_NONCES = 10_000
_EXTENSION = "attestation.nonces"
#: ``ctx.extensions`` key of the :class:`cloister.attest.Collateral` verifiers get
COLLATERAL_EXTENSION = "attestation.collateral"


class NonceCache:
    """Single-use nonces with a lifetime.  Thread-safe.

    Invariant: :meth:`consume` returns True at most once per issued nonce,
    and only within ``ttl`` seconds of issue.
    """

    def __init__(self, ttl: float = NONCE_TTL, limit: int = MAX_NONCES) -> None:
        self._ttl = ttl
        self._limit = limit
        self._issued: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> bytes:
        nonce = secrets.token_bytes(32)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            # refuse rather than evict: a flood must not cancel attestations in flight
            if len(self._issued) >= self._limit:
                raise errors.Overloaded(
                    f"{self._limit} attestation nonces are outstanding; retry in a minute"
                )
            self._issued[nonce] = now + self._ttl
        return nonce

    def consume(self, nonce: bytes) -> bool:
        with self._lock:
            deadline = self._issued.pop(nonce, None)
        return deadline is not None and time.monotonic() <= deadline

    def _expire(self, now: float) -> None:
        for nonce in [n for n, deadline in self._issued.items() if deadline < now]:
            del self._issued[nonce]


def _nonces(ctx: AppContext) -> NonceCache:
    cache = ctx.extensions.get(_EXTENSION)
    if cache is None:
        cache = ctx.extensions.setdefault(_EXTENSION, NonceCache())
    assert isinstance(cache, NonceCache)
    return cache


def post_nonce(ctx: AppContext, req: Request) -> Response:
    nonce = _nonces(ctx).issue()
    return Response.json(201, {"nonce": nonce.hex(), "expires_in": int(NONCE_TTL)})


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


def _parse(req: Request) -> tuple[str, bytes, bytes, bytes]:
    try:
        body = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise errors.RequestError("attestation request is not JSON") from None
    if not isinstance(body, dict):
        raise errors.RequestError("attestation request must be a JSON object")
    return (
        _field(body, "config_id"),
        _decode(body, "nonce", bytes.fromhex),
        _decode(body, "public_key", bytes.fromhex),
        _decode(body, "evidence", lambda s: base64.b64decode(s, validate=True)),
    )


def post_config(ctx: AppContext, req: Request) -> Response:
    config_id, nonce, public_key, evidence = _parse(req)
    # consume first: a nonce is spent by any attempt, so a refused one cannot be replayed
    nonce_ok = _nonces(ctx).consume(nonce)
    session_name, service_name = parse_config_id(config_id)
    # an anonymous caller learns only that the id is unknown; the audit log keeps why
    unknown = [f"config id {config_id} is not known to this CAS"]
    try:
        session, materials = ctx.sessions.released_values(session_name)
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
    service = session.service(service_name)
    if service is None:
        return _refuse(
            ctx,
            config_id,
            session_name,
            unknown,
            audit=[f"session {session_name!r} has no service {service_name!r}"],
        )
    values = {name: SecretValue.from_bytes(blob) for name, blob in materials.items()}
    try:
        resolved = resolve_service(session, service, values)
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
    )
    if not decision.accepted:
        return _refuse(ctx, config_id, session_name, decision.reasons)
    config = build_config(session, service, values)
    sealed = seal_to(public_key, json.dumps(config, separators=(",", ":")).encode("utf-8"))
    claims = decision.claims
    ctx.audit.record(
        caller=None,
        action="attest",
        session=session_name,
        decision="allow",
        service=service_name,
        measurement=claims.measurement if claims else None,
        platform=claims.platform_id if claims else None,
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
) -> Response:
    """Audit (``audit``: the full story, default ``reasons``) and raise with ``reasons``."""
    ctx.audit.record(
        caller=None,
        action="attest",
        session=session,
        decision="deny",
        reason="; ".join(audit or reasons),
        config_id=config_id,
    )
    ctx.metrics.count_attestation("deny")
    if len(reasons) == 1:
        raise errors.AttestationError(f"attestation of {config_id} refused: {reasons[0]}")
    raise errors.AttestationError(
        f"attestation of {config_id} refused ({len(reasons)} reasons)", details=reasons
    )
