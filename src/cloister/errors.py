"""The one error hierarchy of cloister.

Every failure a user can cause or meet is a :class:`Error` carrying a
one-line, user-facing ``message`` (what, where, how to fix) and optional
``details`` (further reasons, one per line).  Neither may contain secret
material.  Subclasses say where the fault lies; the HTTP status of each
class is mapped in :mod:`cloister.cas._errors_http` and the exit code in
:mod:`cloister.cli._exit` — exactly one place each.

Two roots sit side by side: a *decision* (the CAS or LAS answered, and
refused: :class:`AccessDenied`, :class:`AttestationError`, :class:`NotFound`
…) and a :class:`TransportError` (no trustworthy answer at all: the peer is
unreachable, TLS failed, it timed out, or it is not a cloister service).  A
client raises the server's own class for an error answer (the status and
``code`` come from the server's table), so a remote error exits as the local
one does; only transport failures are client-side classes.
"""

from __future__ import annotations

#: `cloister run`'s first process imports this module: not even typing or collections.abc
#: (mypy reads ``if TYPE_CHECKING`` by its name)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class Error(Exception):
    """Base of every cloister error; ``str(err)`` is safe to show a user."""

    #: machine-readable code used in JSON errors (``{"error": {"code": …}}``)
    code = "error"

    def __init__(self, message: str, *, details: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[str] = list(details)

    def __str__(self) -> str:
        return self.message

    def lines(self) -> list[str]:
        """The message followed by every detail, one reason per line."""
        return [self.message, *self.details]


# --- policy: the session text the user wrote is wrong -----------------------


class PolicyError(Error):
    """A session policy is invalid.  ``details`` holds every problem found."""

    code = "invalid_policy"


class UnservedFeature(PolicyError):
    """A valid SCONE session uses a feature cloister's CAS cannot serve (named in the
    message)."""

    code = "unsupported_feature"


class TemplateError(PolicyError):
    """A ``$VAR`` in a session template has no value."""

    code = "missing_variable"


# --- secrets ---------------------------------------------------------------


class SecretError(Error):
    """A secret cannot be generated, imported or rendered as asked."""

    code = "secret_error"


# --- CAS server side -------------------------------------------------------


class RequestError(Error):
    """A request to the CAS is malformed (bad body, bad parameters)."""

    code = "bad_request"


class MethodNotAllowed(RequestError):
    """The path exists but not with this method."""

    code = "method_not_allowed"


class AuthenticationError(Error):
    """The caller presented no usable client certificate."""

    code = "unauthenticated"


class AccessDenied(Error):
    """The caller's identity is not allowed to do this by the session's access policy."""

    code = "forbidden"


class NotFound(Error):
    """A session, secret, route or history entry does not exist (or is not visible)."""

    code = "not_found"


class NotPublic(Error):
    """A secret exists but is not exported publicly."""

    code = "not_public"


class Conflict(Error):
    """A create of an existing name, or an update whose predecessor is stale."""

    code = "conflict"


class PayloadTooLarge(Error):
    """A request body is over the configured limit."""

    code = "payload_too_large"


class StoreError(Error):
    """The CAS store cannot complete an operation (I/O failure, corruption)."""

    code = "store_error"


class StoreFull(StoreError):
    """The CAS store has no space left; nothing was written."""

    code = "insufficient_storage"


class StoreUnavailable(StoreError):
    """The CAS store cannot be reached right now (database down); retry later."""

    code = "store_unavailable"


class Sealed(Error):
    """The CAS is sealed: it serves nothing until its master key is unsealed."""

    code = "sealed"


class BadShare(Error):
    """An unseal share is malformed, from another CAS, or does not fit the others."""

    code = "bad_share"


class Overloaded(Error):
    """The service is at a protective limit right now; nothing was done; retry later.

    ``retry_after`` (seconds) becomes the answer's ``Retry-After``.
    """

    code = "overloaded"

    def __init__(
        self, message: str, *, details: Iterable[str] = (), retry_after: float | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class RateLimited(Overloaded):
    """This client sent more requests of a kind than its rate limit allows; retry later."""

    code = "rate_limited"


class QuotaExceeded(Error):
    """The caller reached a configured quota (sessions per creator …); nothing was done."""

    code = "quota_exceeded"


# --- attestation -----------------------------------------------------------


class AttestationError(Error):
    """Evidence was refused.  ``details`` lists every reason."""

    code = "attestation_failed"


class EvidenceError(AttestationError):
    """Evidence cannot be produced or parsed (LAS failure, malformed quote)."""

    code = "bad_evidence"


# --- transport: no trustworthy answer (not a decision of the CAS or LAS) ------


class TransportError(Error):
    """Talking to a CAS or LAS failed before it decided anything."""

    code = "transport_failed"


class Unreachable(TransportError):
    """The peer cannot be reached: refused, no such host, connection dropped (worth retrying)."""

    code = "unreachable"


class Timeout(Unreachable):
    """The peer did not answer in time (worth retrying)."""

    code = "timeout"


class TLSError(TransportError):
    """The TLS handshake failed: not the pinned certificate, an unusable client identity."""

    code = "tls_failed"


class BadAnswer(TransportError):
    """The peer answered something no cloister CAS or LAS of this version sends."""

    code = "bad_answer"


#: the name of :class:`TransportError` before it had subclasses (kept for one release)
CASClientError = TransportError


# --- local configuration -----------------------------------------------------


class ConfigError(Error):
    """Local configuration is wrong: a missing file, unsafe permissions, bad address."""

    code = "config_error"


# --- runtime and file shield ------------------------------------------------


class LaunchError(Error):
    """``cloister run`` cannot install the configuration or start the program."""

    code = "launch_failed"


class IntegrityError(Error):
    """A protected file or manifest failed its integrity check; nothing of it was used."""

    code = "integrity_error"


class RollbackDetected(IntegrityError):
    """The CAS state is older than its monotonic counter says: a restored copy."""

    code = "rollback"
