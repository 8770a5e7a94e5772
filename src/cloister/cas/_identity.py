"""The CAS's own TLS identity: a CA and a server certificate it issues.

Invariants:
- created once in the state directory (all files 0600) and reused on every
  restart, so a client that pinned the CA certificate keeps trusting the CAS;
- the server certificate is re-issued (by the same CA) only when a requested
  name is not already in its SANs or it is close to expiry;
- private keys are never logged.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloister.cas._keys import check_private_file, write_private_file

_log = logging.getLogger(__name__)

CA_CERT = "cas-ca.pem"
CA_KEY = "cas-ca-key.pem"
SERVER_CERT = "cas-server.pem"
SERVER_KEY = "cas-server-key.pem"

_CA_LIFETIME = dt.timedelta(days=3650)
_SERVER_LIFETIME = dt.timedelta(days=825)
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class CASIdentity:
    """Paths of the CAS identity files plus the PEM of the CA certificate clients pin."""

    ca_cert_path: Path
    server_cert_path: Path
    server_key_path: Path
    ca_cert_pem: str
    ca_key_path: Path


def default_names(extra: Iterable[str] = ()) -> list[str]:
    """Names a CAS is reached by: localhost, 127.0.0.1, ``cas``, the hostname, plus ``extra``."""
    names = ["localhost", "127.0.0.1", "::1", "cas", socket.gethostname(), *extra]
    seen: dict[str, None] = {}
    for name in names:
        if name:
            seen.setdefault(name.strip().lower(), None)
    return list(seen)


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloister CAS CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: list[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloister CAS")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + _SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _server_covers(cert: x509.Certificate, names: list[str]) -> bool:
    if cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(v).lower() for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    wanted = set()
    for name in names:
        try:
            wanted.add(str(ipaddress.ip_address(name)))
        except ValueError:
            wanted.add(name.lower())
    return wanted <= have


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    write_private_file(tmp, data)
    os.replace(tmp, path)


def load_or_create_identity(state: Path, names: Iterable[str] = ()) -> CASIdentity:
    """Load the CAS identity from ``state``, creating whatever is missing.

    ``names`` are added to :func:`default_names` for the server certificate SANs.
    """
    wanted = default_names(names)
    ca_key_path, ca_cert_path = state / CA_KEY, state / CA_CERT
    srv_key_path, srv_cert_path = state / SERVER_KEY, state / SERVER_CERT
    if ca_key_path.exists() and ca_cert_path.exists():
        for path in (ca_key_path, ca_cert_path):
            check_private_file(path)
        ca_key_any = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(ca_key_any, ec.EllipticCurvePrivateKey)
        ca_key = ca_key_any
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    else:
        ca_key, ca_cert = _new_ca()
        _replace(ca_key_path, _key_pem(ca_key))
        _replace(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
        _log.info("created CAS CA certificate %s", ca_cert_path)
    reissue = True
    if srv_key_path.exists() and srv_cert_path.exists():
        for path in (srv_key_path, srv_cert_path):
            check_private_file(path)
        leaf = x509.load_pem_x509_certificates(srv_cert_path.read_bytes())[0]
        reissue = not (leaf.issuer == ca_cert.subject and _server_covers(leaf, wanted))
    if reissue:
        srv_key, srv_cert = _new_server(ca_key, ca_cert, wanted)
        _replace(srv_key_path, _key_pem(srv_key))
        chain = srv_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
            serialization.Encoding.PEM
        )
        _replace(srv_cert_path, chain)
        _log.info("issued CAS server certificate for %s", ", ".join(wanted))
    return CASIdentity(
        ca_cert_path=ca_cert_path,
        server_cert_path=srv_cert_path,
        server_key_path=srv_key_path,
        ca_cert_pem=ca_cert_path.read_text(),
        ca_key_path=ca_key_path,
    )
