"""How a client finds and trusts a CAS: its address and the pinned certificate.

The trust anchor is exactly one certificate — ``--cas-cert FILE``, else
``$CLOISTER_CAS_CERT``, else the pin stored for that address under
``<identity home>/known-cas/``.  Usually it is the CAS's own CA certificate
(``cas-ca.pem``), which issues nothing but that CAS's server certificates, so
the server certificate may be re-issued for new names without breaking the
pin; a pinned server (leaf) certificate works too.  The TLS context built
from it is :func:`cloister.client._transport.tls_context` (the only one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister._address import HostPort, parse_host_port
from cloister._files import write_private_file
from cloister.client._identity import ensure_private_dir
from cloister.client._transport import fingerprint_der

DEFAULT_PORT = 8081
DEFAULT_HOST = "cas"
ADDRESS_VARIABLES = ("CLOISTER_CAS_ADDR", "SCONE_CAS_ADDR")
CERT_VARIABLE = "CLOISTER_CAS_CERT"
PINS_DIR = "known-cas"



@dataclass(frozen=True)
class CASAddress(HostPort):
    """Where a CAS listens; ``str()`` gives ``host:port`` (``[v6]:port``)."""

    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, value: str) -> CASAddress:
        """``host``, ``host:port``, ``[v6]:port`` or ``https://host:port/``."""
        where = parse_host_port(value, default_port=DEFAULT_PORT, what="CAS address",
                                example="--cas cas:8081")
        return cls(where.host.lower(), where.port)

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
    return fingerprint_der(certificate_der(cert) if isinstance(cert, str) else cert)


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
    write_private_file(path, pem.encode("ascii"), replace=True, mode=0o644)
    return path
