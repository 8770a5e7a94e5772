"""How a client finds and trusts a CAS: its address, the pinned certificate, the TLS context.

Pinning (what "verify the CAS" means here):
- the trust anchor is exactly one certificate — ``--cas-cert FILE``, else
  ``$CLOISTER_CAS_CERT``, else the pin stored for that address under
  ``<identity home>/known-cas/`` — and it is the *only* CA the TLS context
  loads (no system CAs);
- usually it is the CAS's own CA certificate (``cas-ca.pem``), which issues
  nothing but that CAS's server certificates, so the server certificate may
  be re-issued for new names without breaking the pin; a pinned server
  (leaf) certificate works too (``VERIFY_X509_PARTIAL_CHAIN``);
- host names are *not* checked: the pin already names exactly one CAS, and
  a CAS is reached by addresses its certificate cannot know in advance
  (container names, IP addresses, tunnels).  Chain verification against the
  pin (signature, validity) is what authenticates the server.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister.client._identity import ClientIdentity, ensure_private_dir

DEFAULT_PORT = 8081
DEFAULT_HOST = "cas"
ADDRESS_VARIABLES = ("CLOISTER_CAS_ADDR", "SCONE_CAS_ADDR")
CERT_VARIABLE = "CLOISTER_CAS_CERT"
PINS_DIR = "known-cas"

_HOST_RE = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


@dataclass(frozen=True)
class CASAddress:
    """Where a CAS listens; ``str()`` gives ``host:port`` (``[v6]:port``)."""

    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, value: str) -> CASAddress:
        """``host``, ``host:port``, ``[v6]:port`` or ``https://host:port/``."""
        text = value.strip()
        for prefix in ("https://", "http://"):
            if text.lower().startswith(prefix):
                text = text[len(prefix) :]
        text = text.rstrip("/")
        host, sep, port_text, valid = text, "", "", True
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            valid = bool(bracket) and (not rest or rest.startswith(":"))
            sep, port_text = rest[:1], rest[1:]
        elif text.count(":") == 1:
            host, sep, port_text = text.partition(":")
        port = DEFAULT_PORT
        if sep:
            port = int(port_text) if port_text.isdigit() else -1
        if not (valid and host and _HOST_RE.fullmatch(host) and 0 < port < 65536):
            raise errors.ConfigError(
                f"invalid CAS address {value!r}",
                details=["write HOST or HOST:PORT (default port 8081), e.g. --cas cas:8081"],
            )
        return cls(host.lower(), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self}/"


def resolve_address(value: str | None = None) -> CASAddress:
    """``value`` (``--cas``), else ``$CLOISTER_CAS_ADDR``, ``$SCONE_CAS_ADDR``, else ``cas``."""
    if not value:
        value = next((os.environ[v] for v in ADDRESS_VARIABLES if os.environ.get(v)), DEFAULT_HOST)
    return CASAddress.parse(value)


def certificate_der(pem: str) -> bytes:
    """DER of the first certificate in ``pem`` (:class:`ValueError` if there is none)."""
    cert = x509.load_pem_x509_certificates(pem.encode("ascii"))[0]
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: str | bytes) -> str:
    """SHA-256 of a certificate's DER (PEM text or DER bytes), as ``openssl x509 -fingerprint``."""
    der = certificate_der(cert) if isinstance(cert, str) else cert
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def read_certificate_file(path: Path | str, what: str) -> str:
    """The PEM text of a certificate file, checked to parse; :class:`ConfigError` otherwise."""
    try:
        pem = Path(path).expanduser().read_text("ascii")
        certificate_der(pem)
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise errors.ConfigError(
            f"{what} {path} is not a PEM certificate",
            details=["get the CAS certificate with: cloister cas show-certificate --state DIR"],
        ) from None
    return pem


@dataclass(frozen=True)
class Trust:
    """The one certificate a CAS must chain to, and where it came from (for messages)."""

    pem: str
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.pem)


def pin_path(home: Path, address: CASAddress) -> Path:
    """Where the pin for ``address`` lives: ``<home>/known-cas/<host>_<port>.pem``."""
    safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", address.host)
    return home / PINS_DIR / f"{safe_host}_{address.port}.pem"


def find_trust(address: CASAddress, home: Path, cas_cert: Path | str | None = None) -> Trust | None:
    """The trust anchor for ``address``: ``cas_cert``, ``$CLOISTER_CAS_CERT`` or the stored pin."""
    if cas_cert:
        return Trust(read_certificate_file(cas_cert, "CAS certificate"), f"--cas-cert {cas_cert}")
    from_env = os.environ.get(CERT_VARIABLE)
    if from_env:
        pem = read_certificate_file(from_env, f"${CERT_VARIABLE} file")
        return Trust(pem, f"${CERT_VARIABLE} ({from_env})")
    pinned = pin_path(home, address)
    if pinned.exists():
        return Trust(read_certificate_file(pinned, "pinned CAS certificate"), f"the pin {pinned}")
    return None


def save_pin(home: Path, address: CASAddress, pem: str) -> Path:
    """Store ``pem`` as the pin for ``address`` (atomically); returns its path."""
    path = pin_path(ensure_private_dir(home), address)
    ensure_private_dir(path.parent)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, pem.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def tls_context(trust: Trust | None, identity: ClientIdentity | None = None) -> ssl.SSLContext:
    """TLS >= 1.2 context trusting only ``trust`` (``None``: unverified, for first contact)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # see the module docstring: the pin is the identity
    if trust is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(cadata=trust.pem)
    if identity is not None:
        try:
            ctx.load_cert_chain(identity.cert_path, identity.key_path)
        except (ssl.SSLError, OSError):
            raise errors.ConfigError(
                f"cannot use client identity {identity.cert_path}",
                details=["the certificate and key must be PEM files that belong together"],
            ) from None
    return ctx
