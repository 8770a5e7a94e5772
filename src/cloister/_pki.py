"""X.509 helpers both sides use: a holder's identity (key hash), and the one certificate builder.

:func:`build_certificate` is how cloister makes every certificate — the CAS's
CA and server certificates, the secrets a policy asks for, client
identities — so each gets a random serial, a critical BasicConstraints and
the right signature hash for its signer in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

#: how far back ``not_valid_before`` goes by default, for clocks that are a little behind
CLOCK_SKEW = dt.timedelta(minutes=5)


def key_hash(cert: x509.Certificate) -> str:
    """Identity of a certificate holder: SHA-256 hex of the DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def common_name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def build_certificate(
    subject: x509.Name | str,
    public_key: CertificatePublicKeyTypes,
    signer_key: CertificateIssuerPrivateKeyTypes,
    *,
    lifetime: dt.timedelta,
    issuer: x509.Name | None = None,
    ca: bool = False,
    path_length: int | None = None,
    not_after: dt.datetime | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    now: dt.datetime | None = None,
    skew: dt.timedelta = CLOCK_SKEW,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signer_key``.

    Self-signed when ``issuer`` is None.  Valid from ``now - skew`` for
    ``lifetime``, cut to ``not_after`` when given (an issuer's own end).
    ``extensions`` are ``(extension, critical)`` pairs after the critical
    BasicConstraints.
    """
    name = common_name(subject) if isinstance(subject, str) else subject
    start = now or dt.datetime.now(dt.UTC)
    end = start + lifetime if not_after is None else min(start + lifetime, not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer is None else issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - skew)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer_key, algorithm)
