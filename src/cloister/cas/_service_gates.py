"""SCONE's second factors and singletons, checked when a service attests.

1. **one-time password** (SCONE 0.3.8, RFC 6238 TOTP: HMAC-SHA1, 6 digits, 30-second
   steps).  The workload appends the code to its configuration id
   (``SCONE_CONFIG_ID=ns/session/service@123456``); the service's
   ``one_time_password_shared_secret`` (else the session's
   ``security.attestation`` one) is its key.  A code counts for the current step and
   the previous one (:data:`OTP_PAST_STEPS`, for clock skew), and only once per
   service: used steps are claimed in the store, so a replay is refused, also
   after a CAS restart and by every CAS sharing the store.
2. **service access token** (0.3.9): the workload sends
   ``SCONE_SERVICE_ACCESS_TOKEN`` from its environment; compared in constant time.
3. **singleton enclaves** (0.3.9): the configuration is released with a lease on
   ``session/service`` in the store; while one instance holds it (renewing it every
   third of :func:`lease_seconds`), another is refused.  A holder that dies stops
   renewing and loses the lease when it expires; one that exits releases it.

:func:`check_factors` is pure (time and the presented values are inputs);
:class:`Gates` does the store claims, after every other check has passed, so a
refused attempt spends neither an OTP nor the lease.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloister import errors
from cloister.cas._http import Request, Response
from cloister.policy._model_base import otp_secret_bytes
from cloister.secrets import SecretValue, render_text

if TYPE_CHECKING:
    from cloister.cas._app import AppContext
    from cloister.cas._sealed_store import SealedStore as Store
    from cloister.policy import Service, Session

_EXTENSION = "attestation.gates"

OTP_STEP_SECONDS = 30
OTP_DIGITS = 6
#: earlier steps whose code still counts (clock skew between operator and CAS)
OTP_PAST_STEPS = 1
#: default lifetime of a singleton lease; CLOISTER_SINGLETON_LEASE_SECONDS overrides it
DEFAULT_LEASE_SECONDS = 30.0


def lease_seconds(env: dict[str, str] | None = None) -> float:
    """The singleton lease lifetime: ``CLOISTER_SINGLETON_LEASE_SECONDS`` (1..3600) or 30."""
    raw = (os.environ if env is None else env).get("CLOISTER_SINGLETON_LEASE_SECONDS")
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1 <= value <= 3600:
        raise errors.ConfigError(
            f"CLOISTER_SINGLETON_LEASE_SECONDS={raw!r} is not a number of seconds from 1 to 3600"
        )
    return value


def totp(key: bytes, step: int) -> str:
    """RFC 6238 (via RFC 4226): the 6-digit code of ``step`` (Unix time // 30)."""
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**OTP_DIGITS
    return f"{code:0{OTP_DIGITS}d}"


def split_otp(config_id: str) -> tuple[str, str | None]:
    """``session/service@123456`` → (``session/service``, ``123456``)."""
    base, sep, otp = config_id.partition("@")
    return base, (otp if sep else None)


@dataclass(frozen=True)
class Factors:
    """What :func:`check_factors` found: every refusal reason, and the OTP step to claim."""

    reasons: list[str]
    otp_step: int | None = None


def check_factors(
    *,
    service: Service,
    session: Session,
    otp_secret: str | None,
    otp: str | None,
    token: str | None,
    now: float,
) -> Factors:
    """The second factors of ``service`` (steps 1 and 2 of the module doc), pure.

    ``otp_secret`` is the effective shared secret with references rendered (None: no
    OTP configured); ``otp`` and ``token`` are what the workload presented."""
    reasons: list[str] = []
    step = None
    where = f"service {service.name}"
    if otp_secret is not None:
        key = otp_secret_bytes(otp_secret)
        if key is None:
            reasons.append(f"the one-time password secret of {where} is not base32 (see the "
                           "session)")
        elif otp is None:
            reasons.append(f"{where} requires a one-time password: append it to the "
                           "configuration id (SCONE_CONFIG_ID=session/service@OTP)")
        else:
            current = int(now) // OTP_STEP_SECONDS
            step = next((s for s in range(current, current - OTP_PAST_STEPS - 1, -1)
                         if hmac.compare_digest(totp(key, s), otp)), None)
            if step is None:
                reasons.append(f"one-time password for {where} is wrong or outside its "
                               f"{OTP_STEP_SECONDS}-second window")
    elif otp is not None:
        reasons.append(f"{where} takes no one-time password: drop the @… from the "
                       "configuration id")
    expected = session.security.service_access_token
    if expected is not None:
        if token is None:
            reasons.append(f"{where} requires a service access token: start it with "
                           "SCONE_SERVICE_ACCESS_TOKEN set")
        elif not hmac.compare_digest(token.encode(), expected.encode()):
            reasons.append(f"the service access token presented for {where} is wrong")
    return Factors(reasons, step)


class Gates:
    """The store claims of the factors: OTP steps used once, singleton leases."""

    def __init__(self, store: Store, *, lease: float | None = None) -> None:
        self._store = store
        self.lease = lease_seconds() if lease is None else lease

    def claim_otp(self, session: str, service: str, step: int, now: float) -> list[str]:
        """Mark ``step`` used for the service; a second use is a replay."""
        key = f"otp/{session}/{service}/{step}"
        keep_until = now + OTP_STEP_SECONDS * (OTP_PAST_STEPS + 2)
        if self._store.claim(key, secrets.token_hex(16), keep_until, now):
            return []
        return [f"one-time password for service {service} was used already: wait for the "
                "next code (each code admits one start)"]

    def acquire(self, session: str, service: str, now: float) -> tuple[str | None, list[str]]:
        """A new lease id for ``session/service``, or the reason another instance has it.

        The store keeps only the id's SHA-256: the id itself is released sealed to the
        attested process, which alone can renew or release the lease."""
        holder = secrets.token_hex(16)
        if self._store.claim(_lease_key(session, service), _hashed(holder), now + self.lease, now):
            return holder, []
        return None, [f"service {service} is a singleton (security.singleton_enclaves) and "
                      "another attested instance holds it: stop that one, or wait until its "
                      f"lease ({self.lease:.0f} s) expires after it died"]

    def renew(self, session: str, service: str, holder: str, now: float) -> bool:
        """Extend a lease its holder still has; never takes a free or expired one (only an
        attestation does)."""
        key = _lease_key(session, service)
        return self._store.extend(key, _hashed(holder), now + self.lease, now)

    def release(self, session: str, service: str, holder: str) -> None:
        self._store.release(_lease_key(session, service), _hashed(holder))


def _lease_key(session: str, service: str) -> str:
    return f"singleton/{session}/{service}"


def _hashed(holder: str) -> str:
    return hashlib.sha256(holder.encode()).hexdigest()


# --- the attestation path's few calls -------------------------------------------------


def gates(ctx: AppContext) -> Gates:
    found = ctx.extensions.get(_EXTENSION)
    if found is None:
        found = ctx.extensions.setdefault(_EXTENSION, Gates(ctx.store))
    assert isinstance(found, Gates)
    return found


def presented_token(body: Mapping[str, Any]) -> str | None:
    """The ``service_access_token`` of an attestation request's JSON body (a string), if any."""
    token = body.get("service_access_token")
    return token if isinstance(token, str) and token else None


def admit(
    ctx: AppContext,
    session: Session,
    service: Service,
    values: Mapping[str, SecretValue],
    *,
    otp: str | None,
    token: str | None,
    accepted: bool,
) -> tuple[list[str], dict[str, Any] | None]:
    """Every factor's refusal reason; when there is none and ``accepted`` (the evidence
    passed), the OTP is spent and the singleton lease taken.  Returns the reasons and the
    lease to release with the configuration (``{"id", "ttl"}``) or None."""
    now = time.time()
    names = {s.name for s in session.secrets}
    secret = service.one_time_password_shared_secret or (
        session.security.attestation.one_time_password_shared_secret)
    try:
        rendered = None if secret is None else render_text(secret, values, names)
    except errors.SecretError:
        rendered = ""  # reported as "not base32" below; never echoed
    found = check_factors(service=service, session=session, otp_secret=rendered, otp=otp,
                          token=token, now=now)
    if found.reasons or not accepted:
        return found.reasons, None
    keeper = gates(ctx)
    if found.otp_step is not None:
        replay = keeper.claim_otp(session.name, service.name, found.otp_step, now)
        if replay:
            return replay, None
    if not session.security.singleton_enclaves:
        return [], None
    holder, busy = keeper.acquire(session.name, service.name, now)
    return busy, None if holder is None else {"id": holder, "ttl": keeper.lease}


def post_lease(ctx: AppContext, req: Request) -> Response:
    """``POST /v1/attest/lease`` ``{"config_id", "lease", "release"?}``: renew (200
    ``{"expires_in"}``) or release a singleton lease; 409 when it is no longer held."""
    try:
        body = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise errors.RequestError("lease request is not JSON") from None
    config_id = body.get("config_id") if isinstance(body, dict) else None
    holder = body.get("lease") if isinstance(body, dict) else None
    if not isinstance(config_id, str) or not isinstance(holder, str) or "/" not in config_id:
        raise errors.RequestError("lease request needs string fields 'config_id' and 'lease'")
    session, _, service = split_otp(config_id)[0].rpartition("/")
    keeper = gates(ctx)
    if body.get("release") is True:
        keeper.release(session, service, holder)
        return Response.json(200, {"released": True})
    if not keeper.renew(session, service, holder, time.time()):
        raise errors.Conflict(f"the singleton lease of {config_id} is not held by this caller "
                              "any more: the service must stop")
    return Response.json(200, {"expires_in": keeper.lease})
