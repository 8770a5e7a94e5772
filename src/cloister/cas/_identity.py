"""The CAS's own TLS identity: a CA, the server certificate it issues, and (``shamir``
seal) a sealed-mode certificate.

Invariants:
- the CA and server private keys live only in the store, sealed under the
  data key (``sealed:identity/…``); the certificates are in the store too and
  exported to ``cas-ca.pem`` / ``cas-server.pem`` in the state directory (public);
- created once at ``cloister cas init`` and reused on every restart and
  unseal, so a client that pinned the CA certificate keeps trusting the CAS;
- the server certificate is re-issued (by the same CA) only when a requested
  name is not already in its SANs or it is close to expiry;
- the sealed-mode certificate (:mod:`cloister._sealmark`) is issued by the CA
  at init; its key is the one key in the state directory, and clients refuse
  it for anything but "the CAS is sealed";
- private keys are never logged or printed (``repr`` hides them).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from cloister import errors
from cloister._pki import build_certificate
from cloister._sealmark import SEALED_MODE_OID
from cloister.cas._keys import replace_private_file
from cloister.cas._sealed_store import SealedStore

_log = logging.getLogger(__name__)

CA_CERT = "cas-ca.pem"
SERVER_CERT = "cas-server.pem"
SEALED_CERT = "cas-sealed.pem"
SEALED_KEY = "cas-sealed-key.pem"
#: files of the first release (plaintext private keys), removed by migrate-state
LEGACY_CA_KEY = "cas-ca-key.pem"
LEGACY_SERVER_KEY = "cas-server-key.pem"

_CA_LIFETIME = dt.timedelta(days=3650)
_SERVER_LIFETIME = dt.timedelta(days=825)
_RENEW_BEFORE = dt.timedelta(days=30)
#: how long an init that lost the race for a shared store's identity waits for the rest of it
_IDENTITY_WAIT_S = 10.0

_CA_KEY, _SERVER_KEY = "identity/ca-key", "identity/server-key"
_CA_CERT, _SERVER_CHAIN = "identity/ca-cert", "identity/server-chain"
#: what a copy of the store to another backend carries over (``cloister cas migrate``)
IDENTITY_KEYS = (_CA_KEY, _CA_CERT, _SERVER_KEY, _SERVER_CHAIN)


@dataclass(frozen=True)
class CASIdentity:
    """The certificate clients pin, the server chain file, and the server key (in memory)."""

    ca_cert_path: Path
    server_cert_path: Path
    ca_cert_pem: str
    server_key_pem: bytes = field(repr=False)


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
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True,
        crl_sign=True, encipher_only=False, decipher_only=False,
    )
    cert = build_certificate(
        "cloister CAS CA", key.public_key(), key, lifetime=_CA_LIFETIME, ca=True,
        path_length=0, now=_now(),
        extensions=[(usage, True),
                    (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)],
    )
    return key, cert


def _new_server(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: list[str],
    *, sealed_mode: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (_san(names), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ]
    if sealed_mode:
        extensions.append((x509.UnrecognizedExtension(
            x509.ObjectIdentifier(SEALED_MODE_OID), b"\x05\x00"), False))
    cert = build_certificate(
        "cloister CAS (sealed mode)" if sealed_mode else "cloister CAS", key.public_key(),
        ca_key, issuer=ca_cert.subject, now=_now(),
        # the sealed-mode certificate lives as long as its CA; the server's at most 825 days
        lifetime=_CA_LIFETIME if sealed_mode else _SERVER_LIFETIME,
        not_after=ca_cert.not_valid_after_utc, extensions=extensions,
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


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.StoreError("the CAS's stored private key is not an EC key")
    return key


def import_identity(store: SealedStore, ca_key_pem: bytes, ca_cert_pem: bytes,
                    server_key_pem: bytes | None, server_chain_pem: bytes | None) -> None:
    """Put an identity into the store (init, or migrating files of the first release);
    parts already there are kept (a rerun after a crash changes nothing)."""
    for key, value in ((_CA_KEY, ca_key_pem), (_CA_CERT, ca_cert_pem),
                       (_SERVER_KEY, server_key_pem), (_SERVER_CHAIN, server_chain_pem)):
        if value is not None and store.get_sealed(key) is None:
            store.put_sealed(key, value)


def create_identity(store: SealedStore, state: Path, names: Iterable[str] = (),
                    *, sealed_mode: bool = False) -> CASIdentity:
    """A new CA and server certificate in ``store`` (and, for ``shamir``, the sealed-mode
    certificate in ``state``); returns the loaded identity."""
    wanted = default_names(names)
    mine = False
    if store.get_sealed(_CA_KEY) is None:
        ca_key, ca_cert = new_ca()
        srv_key, srv_cert = _new_server(ca_key, ca_cert, wanted)
        try:
            import_identity(store, _key_pem(ca_key), _pem(ca_cert), _key_pem(srv_key),
                            _pem(srv_cert) + _pem(ca_cert))
            mine = True
        except errors.Conflict:
            pass  # another replica initialising the same shared store won the CA key
    if not mine:
        # whoever wrote the CA key (the first part) writes the rest right after it
        _wait_for_identity(store)
    if sealed_mode:
        write_sealed_mode_identity(store, state, wanted)
    return load_identity(store, state, names)


def _wait_for_identity(store: SealedStore, timeout_s: float = _IDENTITY_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while (store.get_sealed(_CA_CERT) is None or store.get_sealed(_SERVER_CHAIN) is None) \
            and time.monotonic() < deadline:
        time.sleep(0.05)


def write_sealed_mode_identity(store: SealedStore, state: Path, names: list[str]) -> None:
    ca_pem = store.get_sealed(_CA_KEY)
    ca_cert_pem = store.get_sealed(_CA_CERT)
    assert ca_pem is not None and ca_cert_pem is not None
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key, cert = _new_server(_load_key(ca_pem), ca_cert, names, sealed_mode=True)
    replace_private_file(state / SEALED_KEY, _key_pem(key))
    replace_private_file(state / SEALED_CERT, _pem(cert) + _pem(ca_cert))


def load_identity(store: SealedStore, state: Path, names: Iterable[str] = ()) -> CASIdentity:
    """The identity from the store; re-issues the server certificate when needed and
    (re)writes the public certificate files in ``state``."""
    wanted = default_names(names)
    ca_cert_pem = store.get_sealed(_CA_CERT)
    chain = store.get_sealed(_SERVER_CHAIN)
    server_key = store.get_sealed(_SERVER_KEY)
    if ca_cert_pem is None:
        raise errors.StoreError("the CAS store holds no CA certificate: run cloister cas init")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    leaf = x509.load_pem_x509_certificates(chain)[0] if chain else None
    if server_key is None or leaf is None or not (
            leaf.issuer == ca_cert.subject and _server_covers(leaf, wanted)):
        ca_key_pem = store.get_sealed(_CA_KEY)
        assert ca_key_pem is not None
        key, cert = _new_server(_load_key(ca_key_pem), ca_cert, wanted)
        server_key, chain = _key_pem(key), _pem(cert) + _pem(ca_cert)
        store.replace_sealed(_SERVER_KEY, server_key)
        store.replace_sealed(_SERVER_CHAIN, chain)
        _log.info("issued CAS server certificate for %s", ", ".join(wanted))
    assert chain is not None and server_key is not None
    for name, data in ((CA_CERT, ca_cert_pem), (SERVER_CERT, chain)):
        path = state / name
        if not path.exists() or path.read_bytes() != data:
            replace_private_file(path, data)
    return CASIdentity(
        ca_cert_path=state / CA_CERT, server_cert_path=state / SERVER_CERT,
        ca_cert_pem=ca_cert_pem.decode("ascii"), server_key_pem=server_key,
    )
