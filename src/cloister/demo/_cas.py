"""The little of the CAS API the demo needs: sessions and public values, over pinned HTTPS.

The demo's own identity (a self-signed client certificate, as SCONE users
make with ``openssl req -x509``) lives in ``DIR/identity``; its key is
written 0600.  The CAS is verified against its CA certificate (``cas-ca.pem``
in the CAS state directory).  Session texts (which hold the fspf key) never
appear in an error message.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloister import errors

_TIMEOUT = 30.0


def ensure_identity(directory: Path) -> tuple[Path, Path]:
    """(cert, key) of the demo's CAS identity, created on first use."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloister demo")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


@dataclass(frozen=True)
class Session:
    text: str
    hash: str


class CASClient:
    def __init__(self, host: str, port: int, ca_file: Path,
                 identity: tuple[Path, Path] | None = None) -> None:
        self.host, self.port = host, port
        self._context = ssl.create_default_context(cafile=str(ca_file))
        if identity is not None:
            self._context.load_cert_chain(str(identity[0]), str(identity[1]))

    def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context,
                                           timeout=_TIMEOUT)
        try:
            headers = {"Content-Type": "application/x-yaml"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException) as err:
            raise errors.CASClientError(
                f"cannot reach the demo CAS at {self.host}:{self.port}: {err}"
            ) from None
        finally:
            conn.close()
        try:
            return reply.status, json.loads(data) if data else {}
        except ValueError:
            raise errors.CASClientError(
                f"the CAS at {self.host}:{self.port} answered {reply.status} with no JSON"
            ) from None

    @staticmethod
    def _fail(what: str, status: int, answer: Any) -> errors.Error:
        err = answer.get("error", {}) if isinstance(answer, dict) else {}
        details = [str(d) for d in err.get("details", [])]
        return errors.CASClientError(
            f"{what}: CAS answered {status}: {err.get('message', 'no message')}",
            details=details,
        )

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/healthz")[0] == 200
        except errors.Error:
            return False

    def get_session(self, name: str) -> Session | None:
        status, answer = self._call("GET", f"/v1/sessions/{name}")
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"cannot read session {name}", status, answer)
        return Session(str(answer["session"]), str(answer["hash"]))

    def post_session(self, name: str, text: str) -> str:
        """Create or update (``text`` carries the predecessor); returns the new hash."""
        status, answer = self._call("POST", "/session", text.encode())
        if status != 201:
            raise self._fail(f"cannot store session {name}", status, answer)
        return str(answer["hash"])

    def public_value(self, session: str, secret: str) -> str:
        status, answer = self._call("GET", f"/v1/values/session={session}")
        if status != 200:
            raise self._fail(f"cannot read the public values of {session}", status, answer)
        try:
            return str(answer["values"][secret]["value"])
        except (KeyError, TypeError):
            raise errors.CASClientError(
                f"session {session} exports no public value {secret}"
            ) from None
