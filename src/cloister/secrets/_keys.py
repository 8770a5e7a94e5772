"""Private keys: generate each ``key_type``, read explicit PEM values, serialise PKCS#8.

Invariant: every key that leaves this module as text is an unencrypted
PKCS#8 PEM of one of the supported types (:data:`KEY_TYPES`).  Error
messages name the secret, never the key bytes.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from cloister.errors import PolicyError

#: the key types of the policy language (SCONE 0.3.4/0.3.7); P-256 is the default
KEY_TYPES = ("P-256", "P-384", "Ed25519", "RSA-2048", "RSA-3072")
DEFAULT_KEY_TYPE = "P-256"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def generate_key(key_type: str | None) -> PrivateKey:
    """A fresh private key of ``key_type`` (default P-256)."""
    kt = key_type or DEFAULT_KEY_TYPE
    if kt == "P-256":
        return ec.generate_private_key(ec.SECP256R1())
    if kt == "P-384":
        return ec.generate_private_key(ec.SECP384R1())
    if kt == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kt in ("RSA-2048", "RSA-3072"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kt[4:]))
    raise PolicyError(f"unknown key_type {kt!r}: use one of {', '.join(KEY_TYPES)}")


def key_type_of(key: object) -> str | None:
    """The policy ``key_type`` of ``key``, or None if cloister does not support it."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size in (2048, 3072):
        return f"RSA-{key.key_size}"
    return None


def to_pem(key: PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def to_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_pem(key_pem: str) -> PrivateKey:
    """Load a key this package produced (trusted input: a stored value)."""
    key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    if key_type_of(key) is None:
        raise ValueError("unsupported key type in stored value")
    return key  # type: ignore[return-value]  # narrowed by key_type_of


def parse_explicit(text: str, secret: str, key_type: str | None) -> PrivateKey:
    """Read the explicit ``value`` of private-key ``secret``; PolicyError if unusable.

    PKCS#8 PEM is the documented form; traditional ``EC``/``RSA PRIVATE KEY``
    PEM is accepted too and normalised to PKCS#8.
    """
    where = f"explicit value of private-key secret {secret!r}"
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text:
        raise PolicyError(f"{where} is encrypted: give an unencrypted PKCS#8 PEM key")
    try:
        key = serialization.load_pem_private_key(text.strip().encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError):
        raise PolicyError(
            f"{where} is not a PEM private key: give a PKCS#8 PEM "
            "('-----BEGIN PRIVATE KEY-----')"
        ) from None
    actual = key_type_of(key)
    if actual is None:
        raise PolicyError(f"{where} has an unsupported key type: use one of {', '.join(KEY_TYPES)}")
    if key_type is not None and actual != key_type:
        raise PolicyError(f"{where} is a {actual} key but key_type says {key_type}")
    return key  # type: ignore[return-value]  # narrowed by key_type_of


def signature_hash(issuer_key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """SHA-256 for EC and RSA; Ed25519 signs with no separate hash."""
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        return None
    return hashes.SHA256()
