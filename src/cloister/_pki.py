"""X.509 helpers both sides use: a holder's identity (key hash)."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def key_hash(cert: x509.Certificate) -> str:
    """Identity of a certificate holder: SHA-256 hex of the DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()
