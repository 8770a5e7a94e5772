"""The demo's use of the CAS client: its own identity, sessions, public values.

The demo's identity (a self-signed client certificate, as SCONE users make
with ``openssl req -x509``) lives in ``DIR/identity`` (``cert.pem``, key
``key.pem`` 0600).  The CAS is verified against its CA certificate
(``cas-ca.pem`` in the CAS state directory), through the one client
(:mod:`cloister.client`).  Session texts (which hold the fspf key) never
appear in an error message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cloister import errors
from cloister._files import write_private_file
from cloister.client._cas import CASClient
from cloister.client._identity import ClientIdentity, ensure_private_dir, load_identity_files
from cloister.client._identity import new_identity as _new_identity
from cloister.client._trust import CASAddress, Trust, read_certificate_file


def ensure_identity(directory: Path) -> ClientIdentity:
    """The demo's CAS identity, created on first use."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not (cert.exists() and key.exists()):
        ensure_private_dir(directory)
        key_pem, cert_pem = _new_identity("cloister demo")
        key.unlink(missing_ok=True)
        write_private_file(key, key_pem)
        write_private_file(cert, cert_pem, replace=True, mode=0o644)
    return load_identity_files(cert, key)


@dataclass(frozen=True)
class Session:
    text: str
    hash: str


class DemoCAS:
    """The four calls ``demo up`` makes, on :class:`cloister.client.CASClient`."""

    def __init__(self, port: int, ca_file: Path, identity: ClientIdentity) -> None:
        trust = Trust(read_certificate_file(ca_file, "CAS certificate"), str(ca_file))
        self.client = CASClient(CASAddress("127.0.0.1", port), trust, identity)

    def healthy(self) -> bool:
        try:
            self.client.healthz()
        except errors.Error:
            return False
        return True

    def get_session(self, name: str) -> Session | None:
        try:
            stored = self.client.read_session(name)
        except errors.NotFound:
            return None
        return Session(stored.text, stored.hash)

    def post_session(self, text: str) -> str:
        """Create or update (``text`` carries the predecessor); the new hash (201 or 200)."""
        return self.client.create_session(text).hash

    def enroll_platform(self, platform_id: str, label: str) -> None:
        """Vouch for a LAS platform for the sessions of this identity (``POST /v1/platforms``)."""
        body = json.dumps({"platform_id": platform_id, "label": label}).encode()
        self.client.request_json("POST", "/v1/platforms", body)

    def public_value(self, session: str, secret: str) -> str:
        values = self.client.public_values(session)
        value = values.get(secret, {}).get("value") if isinstance(values, dict) else None
        if not isinstance(value, str):
            raise errors.NotFound(f"session {session} exports no public value {secret}")
        return value
