"""The CAS API on top of the transport: sessions, public values, the CAS certificate.

:class:`CASClient` speaks to one CAS, verified against one pinned
certificate (see :mod:`cloister.client._trust`), optionally presenting a
client identity.  Transport failures are
:class:`~cloister.errors.TransportError`; an error answer of the CAS is the
server's own class (``NotFound``, ``Conflict``, ``AccessDenied``,
``SecretError`` …, see :mod:`cloister.client._transport`), with the server's
details.  Nothing the client sends (session text, keys) is put into an error
message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cloister import errors
from cloister.client._identity import ClientIdentity
from cloister.client._transport import DEFAULT_TIMEOUT, Reply, Transport
from cloister.client._trust import CASAddress, Trust
from cloister.policy._model import NAME_RE, Invalid, check_session_name

__all__ = ["DEFAULT_TIMEOUT", "CASClient", "Reply", "SessionRef", "SessionVersion"]


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
        self._transport = Transport(
            address,
            None if trust is None else trust.pem,
            pin_source=trust.source if trust is not None else "",
            identity=None if identity is None else (identity.cert_path, identity.key_path),
            timeout=timeout,
        )

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

    def sessions(self) -> list[str]:
        """Names of the sessions this client's identity may read."""
        data = self._json("GET", "/v1/sessions")
        names = data.get("sessions")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self._transport.bad_answer("an answer without a 'sessions' list")
        return list(names)

    # --- transport ---------------------------------------------------------

    def allow_sealed(self) -> None:
        """Talk to this CAS even in sealed mode (``cloister cas unseal`` only)."""
        self._transport.sealed_ok = True

    def request(
        self, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        """One HTTPS exchange; raises for transport failures, not for error statuses."""
        return self._transport.exchange(method, path, body, content_type)

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
        try:
            return self._transport.call(method, path, body, content_type)
        except errors.AccessDenied as err:
            if self.identity is not None:
                err.details.append(f"this client's identity is {self.identity.key_hash} "
                                   f"({self.identity.cert_path})")
            raise

    def _unexpected(self, what: str) -> errors.BadAnswer:
        return self._transport.bad_answer(what)


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
