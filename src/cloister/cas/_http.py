"""Request, response and caller types shared by the CAS app and its handlers.

Handlers never see the WSGI environ directly: they get a :class:`Request`
whose ``caller`` is ``None`` for an anonymous (no client certificate)
connection, and return a :class:`Response`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from cloister import errors
from cloister._pki import key_hash

#: environ keys set only by :class:`cloister.cas._tls.IdentityGateway`
ENV_KEY_HASH = "cloister.caller_key_hash"
ENV_CERT_PEM = "cloister.caller_cert_pem"
#: a callable ``() -> bool``: has the client hung up? (set by the HTTPS gateway)
ENV_DISCONNECTED = "cloister.disconnected"


def key_hash_of_pem(pem: str) -> str:
    """:func:`key_hash` of a PEM certificate; :class:`errors.PolicyError` if it does not parse."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise errors.PolicyError("an access_policy entry is not a valid PEM certificate") from exc
    return key_hash(cert)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the key hash it proved, and its certificate."""

    key_hash: str
    cert_pem: str


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    caller: Caller | None
    params: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """The body as UTF-8 text; :class:`errors.RequestError` if it is not."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.RequestError(
                "request body is not UTF-8 text", details=["send the session YAML as UTF-8"]
            ) from None

    def require_caller(self) -> Caller:
        if self.caller is None:
            raise errors.AuthenticationError(
                "this request needs a client certificate",
                details=["connect with a client certificate (curl --cert/--key)"],
            )
        return self.caller


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return cls(status, data + b"\n")

    @classmethod
    def text(
        cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        return cls(status, text.encode("utf-8"), content_type)
