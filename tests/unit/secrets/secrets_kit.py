"""Shared helpers of the cloister.secrets tests (imported by the test modules)."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509

from cloister.policy import ImportSource, Secret, SecretKind, SubjectAltNames

K = SecretKind


def key(name: str, key_type: str | None = None, **kw: Any) -> Secret:
    return Secret(name=name, kind=K.PRIVATE_KEY, key_type=key_type, **kw)


def ca(name: str, private_key: str | None, issuer: str | None = None, **kw: Any) -> Secret:
    return Secret(name=name, kind=K.X509_CA, private_key=private_key, issuer=issuer, **kw)


def cert(
    name: str,
    private_key: str | None,
    issuer: str | None = None,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    endpoint: str | None = None,
    valid_for: timedelta | None = None,
    **kw: Any,
) -> Secret:
    return Secret(
        name=name, kind=K.X509, private_key=private_key, issuer=issuer, dns=dns,
        san=SubjectAltNames(ips=ips), endpoint=endpoint, valid_for=valid_for, **kw,
    )


def imported(name: str, session: str, secret: str, kind: SecretKind | None = None) -> Secret:
    return Secret(name=name, kind=kind, import_=ImportSource(session=session, secret=secret))


def load_cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())


def ext(certificate: x509.Certificate, cls: type) -> x509.Extension:  # type: ignore[type-arg]
    return certificate.extensions.get_extension_for_class(cls)


# --- TLS: keys reach OpenSSL through memfd files, never a file on disk --------------------


@contextmanager
def memfile(text: str) -> Iterator[str]:
    fd = os.memfd_create("tls-test")
    try:
        os.write(fd, text.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


@dataclass
class Outcome:
    error: BaseException | None = None
    peer: dict[str, object] | None = None


@contextmanager
def tls_server(ctx: ssl.SSLContext) -> Iterator[tuple[int, Outcome]]:
    """A one-connection TLS server on a free port; ``Outcome`` says how its handshake ended."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)  # guard against a hung test, not a timing assertion

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(60)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                outcome.peer = tls.getpeercert()  # type: ignore[assignment]
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as err:
            outcome.error = err

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcome
    finally:
        thread.join(60)
        listener.close()


def connect(port: int, ctx: ssl.SSLContext, hostname: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, ctx.wrap_socket(
        raw, server_hostname=hostname
    ) as tls:
        return tls.recv(2)
