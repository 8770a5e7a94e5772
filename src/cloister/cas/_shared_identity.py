"""One TLS identity for every CAS replica of a shared store.

Clients pin the CAS CA certificate.  With several replicas that CA must be the
same everywhere, so it lives in the store as a sealed *service key*
(:meth:`cloister.cas.store.Store.add_service_key`): the first replica to start
creates it, every later one — and every restart — reads it back; of replicas
starting together exactly one CA wins (insert-if-absent), and the others use
the winner's.

Each replica then issues its own server certificate from that CA, for its
own names plus ``--san``, in memory.  Private keys never reach a file: the
server key and chain are handed to OpenSSL through an anonymous ``memfd``
(``/proc/self/fd/N``), and the CA key is dropped once the server certificate is
signed.  Only the public CA certificate is written to ``STATE/cas-ca.pem``, so
``cloister cas show-certificate --state`` works as with one CAS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister import errors
from cloister.cas._identity import (
    CA_CERT,
    CASIdentity,
    _key_pem,
    _new_ca,
    _new_server,
    _replace,
    default_names,
)
from cloister.cas.store import Store

#: the service key holding ``{"key": CA key PEM, "cert": CA certificate PEM}``
CA_SERVICE_KEY = "cas-ca"

_PEM = serialization.Encoding.PEM


def _load_ca(blob: bytes) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        data = json.loads(blob)
        key = serialization.load_pem_private_key(data["key"].encode(), password=None)
        cert = x509.load_pem_x509_certificate(data["cert"].encode())
    except (ValueError, KeyError, TypeError):
        raise errors.StoreError(
            "the CAS CA kept in the store is malformed",
            details=["restore the store from a backup"],
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.StoreError("the CAS CA key kept in the store is not an EC key")
    return key, cert


def shared_ca(store: Store) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The service's CA from ``store``, created by whichever replica comes first."""
    blob = store.service_key(CA_SERVICE_KEY)
    if blob is None:
        key, cert = _new_ca()
        blob = store.add_service_key(CA_SERVICE_KEY, json.dumps(
            {"key": _key_pem(key).decode(), "cert": cert.public_bytes(_PEM).decode()}).encode())
    return _load_ca(blob)


def _memfd(name: str, data: bytes) -> Path:
    """A read-only in-memory file kept open for the life of the process."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return Path(f"/proc/self/fd/{fd}")


def load_shared_identity(store: Store, state: Path, names: Iterable[str] = ()) -> CASIdentity:
    """This replica's identity under the service CA kept in ``store``."""
    ca_key, ca_cert = shared_ca(store)
    server_key, server_cert = _new_server(ca_key, ca_cert, default_names(names))
    del ca_key
    ca_pem = ca_cert.public_bytes(_PEM)
    ca_path = state / CA_CERT
    if not ca_path.exists() or ca_path.read_bytes() != ca_pem:
        _replace(ca_path, ca_pem)
    return CASIdentity(
        ca_cert_path=ca_path,
        server_cert_path=_memfd("cas-server-chain", server_cert.public_bytes(_PEM) + ca_pem),
        server_key_path=_memfd("cas-server-key", _key_pem(server_key)),
        ca_cert_pem=ca_pem.decode("ascii"),
        # the CA key is not kept by a replica (it is in the store)
        ca_key_path=Path(os.devnull),
    )
