"""One HTTPS exchange with a CAS that is trusted through exactly one pinned certificate.

The light layer every CAS client stands on — ``cloister session|values``,
``cloister run`` and the demo — so each gets the same TLS context, the same
pinning and the same errors.  It imports the standard library,
:mod:`cloister.errors` and the status table only (no server, no policy model,
no ``cryptography``): it is on the start-up path of every attested service.

Pinning: the trust anchor is one certificate, usually the CAS's own CA
(``cas-ca.pem``), and it is the only one the context loads (no system CAs).
A pinned server (leaf) certificate works too (``VERIFY_X509_PARTIAL_CHAIN``).
Host names are not checked: the pin already names exactly one CAS, reached by
names its certificate cannot know in advance (container names, IPs, tunnels).

Errors: a transport failure is a :class:`~cloister.errors.TransportError`
(:class:`~cloister.errors.Unreachable`, :class:`~cloister.errors.Timeout`,
:class:`~cloister.errors.TLSError`, :class:`~cloister.errors.BadAnswer`); an
error answer is the *server's own class* (:func:`cloister._http_status.error_class`),
so a remote ``SecretError`` is a ``SecretError`` and exits as the local one does.
Nothing the client sends (session text, keys) is put into an error message.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cloister import __version__, errors
from cloister._address import HostPort
from cloister._http_status import error_class
from cloister._sealmark import is_sealed_mode

#: seconds per request unless the caller says otherwise
DEFAULT_TIMEOUT = 30.0
#: the largest answer read from a CAS (sessions are limited to 1 MiB)
MAX_RESPONSE = 16 * 1024 * 1024

# verify errors that mean "not issued by the pinned certificate" (a changed CAS)
_MISMATCH_CODES = frozenset({2, 7, 18, 19, 20, 21})
# verify errors about validity dates
_EXPIRED, _NOT_YET_VALID = 10, 9


def fingerprint_der(der: bytes) -> str:
    """SHA-256 of DER bytes as ``openssl x509 -fingerprint -sha256`` prints it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def pem_fingerprint(pem: str) -> str:
    """:func:`fingerprint_der` of the first certificate in ``pem``."""
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(_first_pem(pem)))


def _first_pem(pem: str) -> str:
    end = "-----END CERTIFICATE-----"
    start = pem.find("-----BEGIN CERTIFICATE-----")
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate")
    return pem[start : stop + len(end)] + "\n"


def tls_context(
    pinned_pem: str | None,
    identity: tuple[Path, Path] | None = None,
    *,
    pin_source: str = "the pinned CAS certificate",
) -> ssl.SSLContext:
    """The TLS >= 1.2 client context for a CAS: trusts only ``pinned_pem``.

    ``pinned_pem=None`` means unverified (first contact only).  ``identity``
    is the client's (certificate, key) files.  A pin that is not a PEM
    certificate, or an identity that cannot be loaded, is a
    :class:`~cloister.errors.ConfigError` before any network I/O.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # see the module docstring: the pin is the identity
    if pinned_pem is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        try:
            ctx.load_verify_locations(cadata=pinned_pem)
        except (ssl.SSLError, ValueError):
            raise errors.ConfigError(
                f"{pin_source} is not a valid PEM certificate",
                details=["get it with: cloister cas show-certificate --state DIR"],
            ) from None
    if identity is not None:
        cert_path, key_path = identity
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError):
            raise errors.ConfigError(
                f"cannot use client identity {cert_path}",
                details=["the certificate and key must be PEM files that belong together"],
            ) from None
    return ctx


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    #: DER of the certificate the server presented (verified only if there was a pin)
    peer_cert: bytes | None

    def json(self) -> Any:
        return json.loads(self.body)


class Transport:
    """HTTPS to one CAS at ``address``; ``pinned_pem=None`` means *unverified*."""

    def __init__(
        self,
        address: HostPort,
        pinned_pem: str | None,
        *,
        pin_source: str = "the pinned CAS certificate",
        identity: tuple[Path, Path] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        fix: str = "check --cas / $CLOISTER_CAS_ADDR and that `cloister cas serve` runs there",
    ) -> None:
        self.address = address
        self.pinned_pem = pinned_pem
        self.pin_source = pin_source
        #: talk to a CAS in sealed mode (only ``cloister cas unseal`` does)
        self.sealed_ok = False
        self.identity = identity
        self.timeout = timeout
        self.fix = fix
        self._ctx = tls_context(pinned_pem, identity, pin_source=pin_source)

    @property
    def url(self) -> str:
        return f"https://{self.address}/"

    def exchange(
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
            peer = cast(ssl.SSLSocket, conn.sock).getpeercert(binary_form=True)
            if not self.sealed_ok and is_sealed_mode(peer):
                # its keys are still sealed: whoever holds the sealed-mode key is not the CAS
                raise errors.Unreachable(
                    f"the CAS at {self.address} is sealed (waiting for its unseal shares); "
                    "nothing was sent to it",
                    details=["its operator unseals it with: cloister cas unseal"])
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
            raise self.bad_answer(f"an answer larger than {MAX_RESPONSE} bytes")
        return Reply(response.status, data, peer)

    def call(
        self, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """:meth:`exchange`, raising the server's error for a status >= 400; the JSON object."""
        reply = self.exchange(method, path, body, content_type)
        try:
            data = reply.json()
        except (ValueError, UnicodeDecodeError):
            data = None
        if reply.status >= 400:
            raise self.error_answer(reply.status, data)
        if not isinstance(data, dict):
            raise self.bad_answer(f"a non-JSON answer (HTTP {reply.status}) to {method} {path}")
        return data

    # --- errors --------------------------------------------------------------

    def error_answer(self, status: int, data: Any) -> errors.Error:
        """The server's error class for an error answer, with the server's message."""
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return errors.BadAnswer(
                f"CAS {self.address} answered HTTP {status} without a JSON error",
                details=[f"is {self.url} a cloister CAS?"],
            )
        code = error.get("code")
        message = str(error.get("message") or f"HTTP {status}")
        raw_details = error.get("details")
        details = [str(d) for d in raw_details] if isinstance(raw_details, list) else []
        cls = error_class(code if isinstance(code, str) else None, status)
        return cls(f"CAS {self.address}: {message}", details=details)

    def bad_answer(self, what: str) -> errors.BadAnswer:
        return errors.BadAnswer(
            f"CAS {self.address} sent {what}",
            details=[f"is {self.url} a cloister CAS of a compatible version?"],
        )

    def _transport_failed(self, exc: BaseException) -> errors.TransportError:
        where = f"the CAS at {self.address}"
        if isinstance(exc, socket.gaierror):
            return errors.Unreachable(
                f"cannot resolve the CAS host {self.address.host!r}", details=[self.fix]
            )
        if isinstance(exc, ConnectionRefusedError):
            return errors.Unreachable(f"{where} refused the connection", details=[self.fix])
        if isinstance(exc, TimeoutError):
            return errors.Timeout(
                f"{where} did not answer within {self.timeout:g} seconds", details=[self.fix]
            )
        if isinstance(exc, ssl.SSLError):
            return self._tls_failed(exc)
        if isinstance(exc, http.client.HTTPException):
            if isinstance(exc, http.client.RemoteDisconnected):
                return errors.Unreachable(f"{where} closed the connection without an answer",
                                          details=[self.fix])
            return self.bad_answer(f"a malformed HTTP answer ({type(exc).__name__})")
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return errors.Unreachable(f"cannot reach {where}: {reason}", details=[self.fix])

    def _tls_failed(self, exc: ssl.SSLError) -> errors.TLSError:
        where = f"the CAS at {self.address}"
        reason = str(exc.reason or type(exc).__name__)
        if "CERTIFICATE_EXPIRED" in reason.upper() and self.identity is not None:
            # the CAS refused our certificate: the alert names no file, so we do
            return errors.TLSError(
                f"{where} refused this client's identity: its certificate has expired",
                details=[f"identity: {self.identity[0]}; make a new one (move the key and "
                         "certificate away, a new identity is created on next use) and ask "
                         "the session owners to grant it"],
            )
        if "BAD_CERTIFICATE" in reason.upper() and self.identity is not None:
            return errors.TLSError(
                f"{where} refused this client's identity certificate ({reason})",
                details=[f"identity: {self.identity[0]}; is it valid now (check its dates with "
                         f"openssl x509 -noout -dates -in {self.identity[0]})?"],
            )
        return errors.TLSError(
            f"TLS with {where} failed: {reason}",
            details=[f"is {self.url} a cloister CAS (HTTPS)?"],
        )

    def _verify_failed(self, exc: ssl.SSLCertVerificationError) -> errors.TLSError:
        assert self.pinned_pem is not None  # an unverified context never fails verification
        pinned = f"{pem_fingerprint(self.pinned_pem)} from {self.pin_source}"
        if exc.verify_code in (_EXPIRED, _NOT_YET_VALID):
            when = "has expired" if exc.verify_code == _EXPIRED else "is not valid yet"
            return errors.TLSError(
                f"the certificate of the CAS at {self.address} {when}",
                details=[f"pinned certificate: SHA-256 {pinned}",
                         "check this machine's clock (date -u); if it is right, the CAS "
                         "operator must renew the CAS certificate"],
            )
        if exc.verify_code not in _MISMATCH_CODES:
            return errors.TLSError(
                f"the certificate of the CAS at {self.address} fails verification: "
                f"{exc.verify_message}",
                details=[f"pinned certificate: SHA-256 {pinned}"],
            )
        presented = self._presented()
        return errors.TLSError(
            f"REFUSED: the CAS at {self.address} presents a certificate{presented} that does "
            f"not match the pinned certificate (SHA-256 {pinned})",
            details=[
                "someone may be impersonating this CAS; nothing was sent to it",
                "if the CAS was reinstalled on purpose, get its new certificate out of band and "
                f"run: cloister cas attest {self.address} --cas-cert NEW-CAS-CERT.pem",
            ],
        )

    def _presented(self) -> str:
        """`` (SHA-256 …)`` of the CA certificate the CAS reports, unverified; for messages."""
        try:
            reply = Transport(self.address, None, timeout=self.timeout).exchange(
                "GET", "/v1/certificate")
            certificate = reply.json().get("certificate")
            if isinstance(certificate, str):
                return f" (SHA-256 {pem_fingerprint(certificate)})"
            if reply.peer_cert:
                return f" (SHA-256 {fingerprint_der(reply.peer_cert)})"
        except (errors.Error, ValueError, AttributeError):
            pass
        return ""


def post_json(host: str, port: int, path: str, body: dict[str, Any], pinned_pem: str,
              *, timeout: float = 10.0) -> dict[str, Any]:
    """POST ``body`` as JSON to the CAS at ``host:port``; the decoded answer."""
    transport = Transport(HostPort(host, port), pinned_pem, timeout=timeout)
    return transport.call("POST", path, json.dumps(body).encode())
