"""DER encoding of the certificates :mod:`cloister.secrets._x509` issues, without a builder.

``cryptography``'s :class:`~cryptography.x509.CertificateBuilder` re-encodes every
extension object and the issuer's name for each certificate, which costs two
to three times the signature itself.  A session's certificates all follow one
fixed profile (see :mod:`cloister.secrets._x509`), so this module writes their
``TBSCertificate`` directly: the constant parts are byte strings computed once
at import, the issuer's name and key identifier once per CA
(:class:`SignerInfo`), and per certificate only the serial, the validity, the
subject's name, public key and key identifier, and the subjectAltName.

The bytes are the ones the builder writes for the same inputs (same field
order, same string types, UTCTime before 2050, extensions in the order
BasicConstraints, KeyUsage, SubjectKeyIdentifier, AuthorityKeyIdentifier,
ExtendedKeyUsage, SubjectAltName): ``tests/unit/secrets/test_secrets_der.py``
compares them byte for byte with the builder's, for every key type.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from cloister._asn1 import children, element, oid_content
from cloister.secrets._keys import PrivateKey


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def _oid(dotted: str) -> bytes:
    return tlv(0x06, oid_content(dotted))


def integer(value: int) -> bytes:
    """A non-negative DER INTEGER (a leading zero byte when the top bit is set)."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _extension(oid: str | bytes, value: bytes, *, critical: bool) -> bytes:
    """An Extension; ``oid`` dotted, or already encoded."""
    flag = b"\x01\x01\xff" if critical else b""  # DEFAULT FALSE is omitted in DER
    return _seq(_oid(oid) if isinstance(oid, str) else oid, flag, tlv(0x04, value))


def _key_usage(*bits: int) -> bytes:
    """The KeyUsage BIT STRING with ``bits`` set (DER: trailing zero bits dropped)."""
    value = sum(1 << (15 - b) for b in bits)  # bit 0 is the most significant
    raw = value.to_bytes(2, "big").rstrip(b"\0")
    unused = (len(raw) * 8 - 1 - max(bits)) if raw else 0
    return tlv(0x03, bytes((unused,)) + raw)


_VERSION_3 = b"\xa0\x03\x02\x01\x02"
_CN = _oid("2.5.4.3")
_ALGORITHMS = {
    "ec": _seq(_oid("1.2.840.10045.4.3.2")),  # ecdsa-with-SHA256
    "rsa": _seq(_oid("1.2.840.113549.1.1.11"), b"\x05\x00"),  # sha256WithRSAEncryption
    "ed25519": _seq(_oid("1.3.101.112")),
}
_BASIC_CA = _extension("2.5.29.19", _seq(b"\x01\x01\xff"), critical=True)
_BASIC_LEAF = _extension("2.5.29.19", _seq(), critical=True)
_KU_CA = _extension("2.5.29.15", _key_usage(0, 5, 6), critical=True)  # digSig, certSign, cRL
_KU_LEAF = _extension("2.5.29.15", _key_usage(0), critical=True)
_KU_LEAF_RSA = _extension("2.5.29.15", _key_usage(0, 2), critical=True)  # + keyEncipherment
_SERVER_AUTH, _CLIENT_AUTH = _oid("1.3.6.1.5.5.7.3.1"), _oid("1.3.6.1.5.5.7.3.2")
_EKU = {
    "server": _extension("2.5.29.37", _seq(_SERVER_AUTH), critical=False),
    "client": _extension("2.5.29.37", _seq(_CLIENT_AUTH), critical=False),
    "": _extension("2.5.29.37", _seq(_SERVER_AUTH, _CLIENT_AUTH), critical=False),
}
_SKI, _AKI, _SAN = _oid("2.5.29.14"), _oid("2.5.29.35"), _oid("2.5.29.17")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def name(common_name: str) -> bytes:
    """The DER Name ``CN=common_name`` (UTF8String, as the builder encodes it)."""
    return _seq(tlv(0x31, _seq(_CN, tlv(0x0C, common_name.encode("utf-8")))))


def key_identifier(spki: bytes) -> bytes:
    """RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits (what
    ``SubjectKeyIdentifier.from_public_key`` computes), read from the DER SPKI."""
    _, start, end = element(spki, 0, len(spki))  # SEQUENCE { algorithm, subjectPublicKey }
    _, bits = children(spki, start, end)
    return hashlib.sha1(spki[bits[1] + 1:bits[2]]).digest()  # noqa: S324 — RFC 5280


def _time(when: datetime) -> bytes:
    """UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5), in seconds."""
    clock = f"{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}Z"
    if when.year < 2050:
        return tlv(0x17, f"{when.year % 100:02d}{clock}".encode("ascii"))
    return tlv(0x18, f"{when.year:04d}{clock}".encode("ascii"))


def algorithm_of(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return "ed25519"


@dataclass(frozen=True)
class SignerInfo:
    """What a certificate needs of its issuer, computed once per CA."""

    key: PrivateKey
    name_der: bytes
    key_id: bytes
    #: the end of the issuer's own validity, which no certificate it signs outlives
    not_after: datetime | None


def san(dns: tuple[str, ...], ips: tuple[bytes, ...]) -> bytes:
    """The subjectAltName extension: dNSName then iPAddress entries (packed addresses)."""
    names = [tlv(0x82, d.encode("ascii")) for d in dns] + [tlv(0x87, ip) for ip in ips]
    return _extension(_SAN, _seq(*names), critical=False)


def tbs(
    *, serial: int, signer: SignerInfo, not_before: datetime, not_after: datetime,
    subject: bytes, spki: bytes, key_id: bytes, ca: bool, rsa_subject: bool,
    endpoint: str | None, san_ext: bytes,
) -> bytes:
    """The TBSCertificate of the profile (times in UTC, whole seconds)."""
    leaf_usage = _KU_LEAF_RSA if rsa_subject else _KU_LEAF
    fixed = _BASIC_CA + _KU_CA if ca else _BASIC_LEAF + leaf_usage
    extensions = (
        fixed
        + _extension(_SKI, tlv(0x04, key_id), critical=False)
        + _extension(_AKI, _seq(tlv(0x80, signer.key_id)), critical=False)
        + (b"" if ca else _EKU[endpoint or ""])
        + san_ext
    )
    return _seq(
        _VERSION_3, integer(serial), _ALGORITHMS[algorithm_of(signer.key)], signer.name_der,
        _seq(_time(not_before), _time(not_after)), subject, spki,
        tlv(0xA3, _seq(extensions)),
    )


def sign(tbs_der: bytes, key: PrivateKey) -> bytes:
    """The whole certificate: ``tbs_der`` signed by ``key`` (SHA-256; Ed25519 pure)."""
    algorithm = algorithm_of(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs_der, _ECDSA_SHA256)
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(tbs_der)
    return _seq(tbs_der, _ALGORITHMS[algorithm], tlv(0x03, b"\0" + signature))


def pem(der: bytes, label: str = "CERTIFICATE") -> str:
    """PEM text as ``cryptography`` writes it: 64-character lines, final newline."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"
