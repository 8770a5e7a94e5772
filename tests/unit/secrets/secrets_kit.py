"""Shared helpers of the cloister.secrets tests (imported by the test modules)."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509

from cloister.policy import ImportSource, Secret, SecretKind, SubjectAltNames

K = SecretKind


def key(name: str, key_type: str | None = None, **kw: object) -> Secret:
    return Secret(name=name, kind=K.PRIVATE_KEY, key_type=key_type, **kw)  # type: ignore[arg-type]


def ca(name: str, private_key: str, issuer: str | None = None, **kw: object) -> Secret:
    return Secret(name=name, kind=K.X509_CA, private_key=private_key, issuer=issuer, **kw)  # type: ignore[arg-type]


def cert(
    name: str,
    private_key: str | None,
    issuer: str | None = None,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    endpoint: str | None = None,
    valid_for: timedelta | None = None,
    **kw: object,
) -> Secret:
    return Secret(  # type: ignore[arg-type]
        name=name, kind=K.X509, private_key=private_key, issuer=issuer, dns=dns,
        san=SubjectAltNames(ips=ips), endpoint=endpoint, valid_for=valid_for, **kw,
    )


def imported(name: str, session: str, secret: str, kind: SecretKind | None = None) -> Secret:
    return Secret(name=name, kind=kind, import_=ImportSource(session=session, secret=secret))


def load_cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())


def ext(certificate: x509.Certificate, cls: type) -> x509.Extension:  # type: ignore[type-arg]
    return certificate.extensions.get_extension_for_class(cls)
