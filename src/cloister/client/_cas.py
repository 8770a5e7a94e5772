"""HTTPS client of the CAS API (stdlib ``http.client`` + ``ssl``, timeouts on every call).

:class:`CASClient` speaks to one CAS, verified against one pinned
certificate (see :mod:`cloister.client._trust`), optionally presenting a
client identity.  Every failure is a :class:`cloister.errors.CASClientError`
with one readable line; an error answer of the CAS becomes a class that is
*both* a ``CASClientError`` and the server's class (``NotFound``,
``Conflict``, ``AccessDenied`` …), so callers can catch either, and the
server's ``details`` become the error's details.  Nothing the client sends
(session text, keys) is put into an error message.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from cloister import __version__, errors
from cloister.client._identity import ClientIdentity
from cloister.client._trust import CASAddress, Trust, tls_context
from cloister.policy._model import NAME_RE, Invalid, check_session_name

DEFAULT_TIMEOUT = 30.0
#: the largest answer read from a CAS (sessions are limited to 1 MiB)
MAX_RESPONSE = 16 * 1024 * 1024

# verify errors that mean "not issued by the pinned certificate" (a changed CAS)
_MISMATCH_CODES = frozenset({2, 7, 18, 19, 20, 21})

#: server error classes a CAS can answer with (``code`` in the JSON error)
_SERVER_CLASSES: tuple[type[errors.Error], ...] = (
    errors.TemplateError, errors.PolicyError, errors.SecretError, errors.RequestError,
    errors.AuthenticationError, errors.AccessDenied, errors.NotFound, errors.NotPublic,
    errors.Conflict, errors.PayloadTooLarge, errors.StoreFull, errors.StoreError,
    errors.EvidenceError, errors.AttestationError,
)
_BY_STATUS: dict[int, type[errors.Error]] = {
    400: errors.RequestError, 401: errors.AuthenticationError, 403: errors.AccessDenied,
    404: errors.NotFound, 405: errors.RequestError, 409: errors.Conflict,
    413: errors.PayloadTooLarge, 422: errors.SecretError, 503: errors.StoreError,
    507: errors.StoreFull,
}


def _remote(cls: type[errors.Error]) -> type[errors.CASClientError]:
    # the server class first, so ``code`` and the CLI exit code follow the server's error
    made = type(f"Remote{cls.__name__}", (cls, errors.CASClientError), {"__module__": __name__})
    return cast(type[errors.CASClientError], made)


#: server class -> the client-side class raised for it
REMOTE_ERRORS: dict[type[errors.Error], type[errors.CASClientError]] = {
    cls: _remote(cls) for cls in _SERVER_CLASSES
}
_BY_CODE = {cls.code: REMOTE_ERRORS[cls] for cls in _SERVER_CLASSES}


def remote_error_class(code: str | None, status: int) -> type[errors.CASClientError]:
    """The class to raise for an error answer: by the server's ``code``, else by status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    by_status = _BY_STATUS.get(status)
    return REMOTE_ERRORS[by_status] if by_status else errors.CASClientError


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    #: DER of the certificate the server presented (verified only if the client had a pin)
    peer_cert: bytes | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class SessionRef:
    name: str
    hash: str


@dataclass(frozen=True)
class SessionVersion:
    name: str
    text: str
    hash: str
    predecessor: str | None


class CASClient:
    """One CAS at ``address``; ``trust=None`` means *unverified* (first contact only)."""

    def __init__(
        self,
        address: CASAddress,
        trust: Trust | None,
        identity: ClientIdentity | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.address = address
        self.trust = trust
        self.identity = identity
        self.timeout = timeout
        self._ctx = tls_context(trust, identity)

    # --- the API ---------------------------------------------------------

    def create_session(self, text: str) -> SessionRef:
        """POST the session YAML; with a ``predecessor`` in it this is an update."""
        data = self._json("POST", "/v1/sessions", text.encode("utf-8"), "application/x-yaml")
        return SessionRef(_str(data, "name", self), _str(data, "hash", self))

    def read_session(self, name: str, session_hash: str | None = None) -> SessionVersion:
        path = f"/v1/sessions/{_quote(_session_name(name))}"
        if session_hash:
            path += f"?hash={_quote(session_hash)}"
        data = self._json("GET", path)
        predecessor = data.get("predecessor")
        return SessionVersion(
            str(data.get("name", name)), _str(data, "session", self), _str(data, "hash", self),
            predecessor if isinstance(predecessor, str) else None,
        )

    def current_hash(self, name: str) -> str:
        return self.read_session(name).hash

    def public_values(self, session: str) -> dict[str, dict[str, Any]]:
        """``{"SECRET": {"value": …, …}}`` for every ``export_public`` secret of ``session``."""
        data = self._json("GET", f"/v1/values/session={_quote(_session_name(session))}")
        values = data.get("values")
        if not isinstance(values, dict):
            raise self._unexpected("no 'values' object")
        return values

    def public_value(self, session: str, secret: str) -> dict[str, Any]:
        """One public secret: ``{"name": …, "value": …, …}``."""
        path = f"/v1/values/session={_quote(_session_name(session))},secret={_quote(secret)}"
        if not NAME_RE.fullmatch(secret):
            raise errors.ConfigError(f"{secret!r} is not a secret name")
        return self._json("GET", path)

    def certificate(self) -> str:
        """The CAS certificate (its CA) as the CAS itself reports it."""
        return _str(self._json("GET", "/v1/certificate"), "certificate", self)

    def healthz(self) -> None:
        self._json("GET", "/healthz")

    # --- transport ---------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        """One HTTPS exchange; raises for transport failures, not for error statuses."""
        headers = {"User-Agent": f"cloister/{__version__}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPSConnection(
            self.address.host, self.address.port, timeout=self.timeout, context=self._ctx
        )
        try:
            conn.connect()
            sock = cast(ssl.SSLSocket, conn.sock)
            peer = sock.getpeercert(binary_form=True)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE + 1)
        except ssl.SSLCertVerificationError as exc:
            raise self._verify_failed(exc) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._transport_failed(exc) from None
        finally:
            conn.close()
        if len(data) > MAX_RESPONSE:
            raise self._unexpected(f"an answer larger than {MAX_RESPONSE} bytes")
        return Reply(response.status, data, peer)

    def request_json(
        self, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """:meth:`request`, raising the server's error for a status >= 400; the JSON object."""
        return self._json(method, path, body, content_type)

    def _json(
        self, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        reply = self.request(method, path, body, content_type)
        try:
            data = reply.json()
        except (ValueError, UnicodeDecodeError):
            data = None
        if reply.status >= 400:
            raise self._error_answer(reply.status, data)
        if not isinstance(data, dict):
            raise self._unexpected(f"a non-JSON answer (HTTP {reply.status}) to {method} {path}")
        return data

    # --- errors --------------------------------------------------------------

    def _error_answer(self, status: int, data: Any) -> errors.CASClientError:
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return errors.CASClientError(
                f"CAS {self.address} answered HTTP {status} without a JSON error",
                details=[f"is {self.address.url} a cloister CAS?"],
            )
        code = error.get("code")
        message = str(error.get("message") or f"HTTP {status}")
        raw_details = error.get("details")
        details = [str(d) for d in raw_details] if isinstance(raw_details, list) else []
        cls = remote_error_class(code if isinstance(code, str) else None, status)
        if issubclass(cls, errors.AccessDenied) and self.identity is not None:
            details.append(
                f"this client's identity is {self.identity.key_hash} "
                f"({self.identity.cert_path})"
            )
        return cls(f"CAS {self.address}: {message}", details=details)

    def _unexpected(self, what: str) -> errors.CASClientError:
        return errors.CASClientError(
            f"CAS {self.address} sent {what}",
            details=[f"is {self.address.url} a cloister CAS of a compatible version?"],
        )

    def _transport_failed(self, exc: BaseException) -> errors.CASClientError:
        where = f"the CAS at {self.address}"
        fix = "check --cas / $CLOISTER_CAS_ADDR and that `cloister cas serve` runs there"
        if isinstance(exc, socket.gaierror):
            return errors.CASClientError(
                f"cannot resolve the CAS host {self.address.host!r}", details=[fix]
            )
        if isinstance(exc, ConnectionRefusedError):
            return errors.CASClientError(f"{where} refused the connection", details=[fix])
        if isinstance(exc, TimeoutError):
            return errors.CASClientError(
                f"{where} did not answer within {self.timeout:g} seconds", details=[fix]
            )
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or type(exc).__name__
            return errors.CASClientError(
                f"TLS with {where} failed: {reason}",
                details=[f"is {self.address.url} a cloister CAS (HTTPS)?"],
            )
        if isinstance(exc, http.client.HTTPException):
            return self._unexpected(f"a malformed HTTP answer ({type(exc).__name__})")
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return errors.CASClientError(f"cannot talk to {where}: {reason}", details=[fix])

    def _verify_failed(self, exc: ssl.SSLCertVerificationError) -> errors.CASClientError:
        assert self.trust is not None  # an unverified context never fails verification
        pinned = f"{self.trust.fingerprint} from {self.trust.source}"
        if exc.verify_code not in _MISMATCH_CODES:
            return errors.CASClientError(
                f"the certificate of the CAS at {self.address} fails verification: "
                f"{exc.verify_message}",
                details=[f"pinned certificate: SHA-256 {pinned}"],
            )
        from cloister.client._connect import fetch_certificate  # noqa: PLC0415 — a cycle

        presented = ""
        try:  # what it presents instead, comparable with the pin (its CA certificate)
            seen = fetch_certificate(self.address, timeout=self.timeout)
            presented = f" (SHA-256 {seen.fingerprint})"
        except errors.Error:
            pass
        return errors.CASClientError(
            f"REFUSED: the CAS at {self.address} presents a certificate{presented} that does "
            f"not match the pinned certificate (SHA-256 {pinned})",
            details=[
                "someone may be impersonating this CAS; nothing was sent to it",
                "if the CAS was reinstalled on purpose, get its new certificate out of band and "
                f"run: cloister cas attest {self.address} --cas-cert NEW-CAS-CERT.pem",
            ],
        )


def _session_name(name: str) -> str:
    """``name`` if it is a valid session name; a name can never smuggle URL syntax."""
    try:
        return check_session_name(name)
    except Invalid as err:
        raise errors.ConfigError(err.message) from None


def _quote(part: str) -> str:
    # "/" stays: namespaced session names (ns/app) are paths on the CAS
    return quote(part, safe="/")


def _str(data: dict[str, Any], key: str, client: CASClient) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise client._unexpected(f"an answer without {key!r}")
    return value
