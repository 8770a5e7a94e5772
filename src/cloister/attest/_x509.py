"""X.509 helpers verifiers share: loading, validity at a given time, issuer signatures.

Pure: certificates are bytes, the time is an argument.  Vendor certificates
do things strict parsers dislike — AMD's VCEKs have serial number 0, which
``cryptography`` warns about — so loading accepts them on purpose (the
signature chain, not the serial, is what authenticates them).
"""

from __future__ import annotations

import functools
import warnings
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

#: certificate loads and issuer checks remembered (each a pure function of the bytes: a
#: VCEK, PCK or AK chain that comes with every quote is parsed and checked once)
MEMO_SIZE = 256


def load_certificate(data: bytes) -> x509.Certificate | None:
    """One certificate from DER or PEM bytes, or None if ``data`` is not one (remembered
    for the :data:`MEMO_SIZE` last ``data``: a certificate object never changes)."""
    return _load(bytes(data))


@functools.lru_cache(maxsize=MEMO_SIZE)
def _load(data: bytes) -> x509.Certificate | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # serial number 0 (AMD VCEKs) is accepted on purpose
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except ValueError:
            return None


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (or the one DER certificate); empty if none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if b"-----BEGIN CERTIFICATE-----" in data:
            try:
                return x509.load_pem_x509_certificates(data)
            except ValueError:
                return []
    cert = load_certificate(data)
    return [] if cert is None else [cert]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 hex of the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def name(cert: x509.Certificate) -> str:
    """The certificate's subject common name (or the whole subject) for messages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Google's vTPM CAs have common names over 64 characters
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else cert.subject.rfc4514_string()


def validity_problem(cert: x509.Certificate, now: datetime, what: str) -> str | None:
    """Why ``cert`` is not valid at ``now`` (a reason line), or None."""
    if now < cert.not_valid_before_utc:
        return f"{what} {name(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    if now > cert.not_valid_after_utc:
        return f"{what} {name(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


@functools.lru_cache(maxsize=MEMO_SIZE)
def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key signed ``cert`` (RSA-PKCS1, RSA-PSS or ECDSA) and names match.

    Remembered for the :data:`MEMO_SIZE` last pairs: certificates compare and hash by
    their whole DER encoding, so a remembered answer is that of these exact bytes
    (validity in time is not part of it: :func:`validity_problem` checks that every time).
    """
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def chain_problems(
    chain: list[tuple[x509.Certificate, str]], root: x509.Certificate, now: datetime
) -> list[str]:
    """Why ``chain`` (leaf first, each ``(cert, role)``) does not lead to ``root`` at ``now``.

    Each certificate must be valid at ``now`` and signed by the next one; the
    last by ``root``, which must be self-signed and valid too.  Every problem
    is listed.
    """
    problems = []
    links = [*chain, (root, "root")]
    for (cert, role), (issuer, issuer_role) in zip(links, [*links[1:], (root, "root")],
                                                   strict=True):
        why = validity_problem(cert, now, role)
        if why is not None:
            problems.append(why)
        if not issued_by(cert, issuer):
            problems.append(f"{role} {name(cert)} is not signed by {issuer_role} {name(issuer)}")
    return problems
