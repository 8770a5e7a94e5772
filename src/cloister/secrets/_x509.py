"""Issue X.509 certificates for ``x509`` and ``x509-ca`` secrets; read explicit ones.

Profile (what a Vault or OpenSSL user expects):
- subject is ``CN=<common_name>``; ``common_name`` defaults to the first DNS
  name, else the secret name (cut to the 64 characters X.520 allows);
- serial: 159 random bits; signature SHA-256 (EC, RSA) or Ed25519;
- validity: ``notBefore = now - 1 hour`` (tolerates clock skew between CAS and
  peers); ``notAfter = now + valid_for``, by default :data:`DEFAULT_VALIDITY`
  (10 years, SCONE's "virtually unlimited" made finite), and never later than
  the issuer's own ``notAfter`` (a chain cannot outlive its CA);
- CA: basicConstraints CA=true (critical), keyUsage keyCertSign, cRLSign,
  digitalSignature (critical), SKI, AKI;
- end entity: basicConstraints CA=false (critical), keyUsage digitalSignature
  (+ keyEncipherment for RSA) (critical), extendedKeyUsage serverAuth and/or
  clientAuth per ``endpoint`` (both when omitted), subjectAltName from the DNS
  names and IPs, SKI, AKI.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloister._pki import build_certificate
from cloister.errors import PolicyError
from cloister.policy._model import Secret, SecretKind
from cloister.secrets import _der, _keys
from cloister.secrets._keys import PrivateKey

DEFAULT_VALIDITY = timedelta(days=3650)
CLOCK_SKEW = timedelta(hours=1)
_CN_MAX = 64
_PEM_KEY_RE = re.compile(
    r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.*?-----END (?:RSA |EC )?PRIVATE KEY-----",
    re.DOTALL,
)


@dataclass(frozen=True)
class Issuer:
    """A CA able to sign: its certificate, its key, and its own chain (PEM, up to root)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[str, ...]
    #: ``cert`` as PEM, when the caller has it already
    known_pem: str | None = None
    #: what its certificates need of it (name, key id, end), when the caller has it already
    known_signer: _der.SignerInfo | None = None

    @property
    def pem(self) -> str:
        return self.known_pem if self.known_pem is not None else cert_pem(self.cert)

    @property
    def signer(self) -> _der.SignerInfo:
        return self.known_signer or signer_of(self.cert, self.key)


@dataclass(frozen=True)
class Issued:
    """A new certificate: its DER and PEM, and what it needs to sign (if it is a CA)."""

    der: bytes
    pem: str
    signer: _der.SignerInfo

    @functools.cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def signer_of(cert: x509.Certificate, key: PrivateKey) -> _der.SignerInfo:
    """The issuer's part of the certificates ``cert`` (with ``key``) signs: its subject,
    its key identifier (its SKI, else one computed from its key) and its end."""
    return _der.SignerInfo(
        key, cert.subject.public_bytes(), _authority_key_id(cert, key).key_identifier or b"",
        cert.not_valid_after_utc,
    )


def issue(secret: Secret, key: PrivateKey, issuer: Issuer | None, now: datetime) -> Issued:
    """A new certificate for ``secret`` with public key of ``key``, signed by ``issuer`` or self.

    The DER is written directly (:mod:`cloister.secrets._der`); inputs outside what
    it covers (a non-ASCII DNS name, a validity outside 1950-9999 or ending before it
    starts) go through :func:`issue_with_builder`, which also defines the profile.
    """
    is_ca = secret.kind is SecretKind.X509_CA
    subject = _der.name(_common_name(secret))
    dns = secret.dns_names
    ips = tuple(ip.packed for ip in _ip_addresses(secret))
    signer = issuer.signer if issuer is not None else None
    start = now.replace(microsecond=0)
    end = start + (secret.valid_for or DEFAULT_VALIDITY)
    if signer is not None and signer.not_after is not None:
        end = min(end, signer.not_after)
    not_before = start - CLOCK_SKEW
    if not (all(d.isascii() for d in dns) and not_before.year >= 1950
            and end.year <= 9999 and end >= not_before):
        cert = issue_with_builder(secret, key, issuer, now)
        return Issued(cert.public_bytes(serialization.Encoding.DER), cert_pem(cert),
                      signer_of(cert, key))
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_id = _der.key_identifier(spki)
    if signer is None:
        signer = _der.SignerInfo(key, subject, key_id, None)
    tbs = _der.tbs(
        serial=x509.random_serial_number(), signer=signer, not_before=not_before,
        not_after=end, subject=subject, spki=spki, key_id=key_id, ca=is_ca,
        rsa_subject=isinstance(key, rsa.RSAPrivateKey), endpoint=secret.endpoint,
        san_ext=_der.san(dns, ips) if dns or ips else b"",
    )
    der = _der.sign(tbs, signer.key)
    own = _der.SignerInfo(key, subject, key_id, end)
    return Issued(der, _der.pem(der), own)


def issue_with_builder(
    secret: Secret, key: PrivateKey, issuer: Issuer | None, now: datetime
) -> x509.Certificate:
    """:func:`issue` through ``cryptography``'s certificate builder (the reference profile)."""
    is_ca = secret.kind is SecretKind.X509_CA
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(secret))])
    public_key = key.public_key()
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (_key_usage(is_ca, key), True),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        (_authority_key_id(issuer.cert, issuer.key) if issuer else _own_key_id(key), False),
    ]
    if not is_ca:
        extensions.append((_extended_key_usage(secret.endpoint), False))
    sans = _subject_alt_names(secret)
    if sans:
        extensions.append((x509.SubjectAlternativeName(sans), False))
    return build_certificate(
        subject, public_key, issuer.key if issuer is not None else key,
        issuer=issuer.cert.subject if issuer is not None else None,
        lifetime=secret.valid_for or DEFAULT_VALIDITY,
        not_after=issuer.cert.not_valid_after_utc if issuer is not None else None,
        ca=is_ca, extensions=extensions, now=now, skew=CLOCK_SKEW,
    )


def _common_name(secret: Secret) -> str:
    if secret.common_name is not None:
        if not 1 <= len(secret.common_name) <= _CN_MAX:
            raise PolicyError(
                f"common_name of secret {secret.name!r} must be 1-{_CN_MAX} characters"
            )
        return secret.common_name
    names = [n for n in secret.dns_names if len(n) <= _CN_MAX]
    return names[0] if names else secret.name[:_CN_MAX]


def _key_usage(is_ca: bool, key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not is_ca and isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def _own_key_id(key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def _authority_key_id(cert: x509.Certificate, key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    """The AKI of what ``cert`` (a CA with ``key``) signs: its SKI, else from its key."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return _own_key_id(key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _extended_key_usage(endpoint: str | None) -> x509.ExtendedKeyUsage:
    usages = {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
    }.get(endpoint or "", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    return x509.ExtendedKeyUsage(usages)


def _ip_addresses(secret: Secret) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    addresses = []
    for ip in secret.san.ips:
        try:
            addresses.append(ipaddress.ip_address(ip))
        except ValueError:
            raise PolicyError(
                f"san entry ip:{ip} of secret {secret.name!r} is not an IP address"
            ) from None
    return addresses


def _subject_alt_names(secret: Secret) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in secret.dns_names]
    return names + [x509.IPAddress(ip) for ip in _ip_addresses(secret)]


# --- explicit certificate values ------------------------------------------------


@dataclass(frozen=True)
class ExplicitCert:
    cert: x509.Certificate
    extra: tuple[x509.Certificate, ...]  # further certificates given with it
    key: PrivateKey | None  # a key given in the same PEM text


def parse_explicit(text: str, secret: Secret) -> ExplicitCert:
    """Read the explicit ``value`` of a certificate secret; PolicyError if unusable.

    The value is PEM: the certificate first, optionally followed by its chain
    (intermediates → root) and/or its PKCS#8 private key.
    """
    kind = secret.kind.value if secret.kind else "certificate"
    where = f"explicit value of {kind} secret {secret.name!r}"
    try:
        certs = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except (ValueError, UnicodeError):
        raise PolicyError(
            f"{where} is not a PEM certificate: give '-----BEGIN CERTIFICATE-----' text"
        ) from None
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text:
        raise PolicyError(f"{where} holds an encrypted private key: give it unencrypted")
    key_blocks = _PEM_KEY_RE.findall(text)
    if len(key_blocks) > 1:
        raise PolicyError(f"{where} holds more than one private key")
    key = _keys.parse_explicit(key_blocks[0], secret.name, None) if key_blocks else None
    cert = certs[0]
    if secret.kind is SecretKind.X509_CA and not is_ca(cert):
        raise PolicyError(f"{where} is not a CA certificate (basicConstraints CA is not true)")
    if key is not None and not same_public_key(cert, key):
        raise PolicyError(f"{where}: the private key does not match the certificate")
    return ExplicitCert(cert, tuple(certs[1:]), key)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def same_public_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` names and signed ``cert``."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
