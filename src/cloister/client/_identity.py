"""The client's identity at a CAS: a self-signed P-256 key and certificate.

A CAS knows a caller by the SHA-256 of its certificate's SubjectPublicKeyInfo
(:func:`cloister._pki.key_hash`), so the certificate itself may be self-signed.

Invariants:
- the identity home (``$CLOISTER_HOME`` or ``~/.cloister``) is created 0700
  and refused when group or others can access it (as ssh refuses ``~/.ssh``);
- the private key is written with ``os.open(..., 0o600)`` (never the umask),
  under an exclusive lock so concurrent first uses create exactly one identity;
- a key file that group or others can read is refused, not used.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister import errors
from cloister._files import check_private_file, write_private_file
from cloister._pki import build_certificate, key_hash

#: file names inside an identity directory (curl's ``--cert`` / ``--key``)
CERT_FILE = "client.pem"
KEY_FILE = "client-key.pem"
_LOCK_FILE = ".identity.lock"
_LIFETIME = dt.timedelta(days=3650)
#: a missing ``--identity`` path with one of these suffixes is a typo, not a new directory
IDENTITY_FILE_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".key"})


def identity_home() -> Path:
    """``$CLOISTER_HOME`` if set, else ``~/.cloister``."""
    home = os.environ.get("CLOISTER_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cloister"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 if missing; refuse it when others can access it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigError(f"cannot create directory {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise errors.ConfigError(
            f"identity directory {path} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 700 {path}"],
        )
    return path


@dataclass(frozen=True)
class ClientIdentity:
    """Paths of a client certificate and its key (``key_path`` may equal ``cert_path``)."""

    cert_path: Path
    key_path: Path
    #: the directory pins and other per-user state belong to
    home: Path
    cert_pem: str
    #: SHA-256 hex of the certificate's SubjectPublicKeyInfo: the identity a CAS sees
    key_hash: str
    #: True when this call created the identity
    created: bool = False


def _who() -> str:
    try:
        return f"cloister client {getpass.getuser()}@{socket.gethostname()}"[:64]
    except (OSError, KeyError):
        return f"cloister client {socket.gethostname()}"[:64]


def new_identity(common_name: str | None = None) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a new self-signed P-256 identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_certificate(common_name or _who(), key.public_key(), key, lifetime=_LIFETIME)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _create_in(directory: Path) -> bool:
    """Create the identity files in ``directory`` unless present; True if created."""
    with (directory / _LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
        if key_path.exists() and cert_path.exists():
            return False
        if key_path.exists() or cert_path.exists():
            # never replace half an identity: the key is who this client is to every CAS
            present, absent = (key_path, cert_path) if key_path.exists() else (
                cert_path, key_path)
            raise errors.ConfigError(
                f"identity in {directory} is incomplete: {present.name} exists but "
                f"{absent.name} does not",
                details=["restore the missing file, or move both away to create a new "
                         "identity (a new key is a new identity to every CAS)"],
            )
        key_pem, cert_pem = new_identity()
        write_private_file(key_path, key_pem, replace=True)
        write_private_file(cert_path, cert_pem, replace=True, mode=0o644)
        return True


def _load(cert_path: Path, key_path: Path, home: Path, created: bool) -> ClientIdentity:
    for path in (cert_path, key_path):
        if not path.is_file():
            raise errors.ConfigError(
                f"identity file {path} does not exist",
                details=["--identity takes a directory or a PEM file with key and certificate"],
            )
    check_private_file(key_path)
    try:
        pem = cert_path.read_text("ascii")
        cert = x509.load_pem_x509_certificates(pem.encode("ascii"))[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise errors.ConfigError(
            f"identity {cert_path} does not hold a PEM certificate and unencrypted private key",
            details=["--identity takes a directory or a PEM file with key and certificate"],
        ) from None
    if key.public_key() != cert.public_key():
        raise errors.ConfigError(
            f"identity key {key_path} does not belong to certificate {cert_path}"
        )
    _check_dates(cert, cert_path)
    return ClientIdentity(cert_path, key_path, home, pem, key_hash(cert), created)


def _check_dates(cert: x509.Certificate, cert_path: Path) -> None:
    """A CAS refuses an identity outside its validity; say so before connecting."""
    now = dt.datetime.now(dt.UTC)
    fix = (f"make a new identity: move {cert_path.name} and its key away (a new one is created "
           "on next use; a new key is a new identity to every CAS, so ask the session owners "
           "to grant it), or give another with --identity")
    if cert.not_valid_after_utc < now:
        raise errors.ConfigError(
            f"client identity {cert_path} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: a CAS refuses it",
            details=[fix],
        )
    if cert.not_valid_before_utc > now:
        raise errors.ConfigError(
            f"client identity {cert_path} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: a CAS refuses it",
            details=["check this machine's clock (date -u)", fix],
        )


def load_identity_files(cert_path: Path, key_path: Path) -> ClientIdentity:
    """The identity in exactly these two files (its home: their directory)."""
    return _load(cert_path, key_path, cert_path.parent, False)


def load_identity(path: Path | str | None = None) -> ClientIdentity:
    """The client identity: in ``path`` (directory or PEM file) or in :func:`identity_home`.

    A directory (the default home included) gets a new identity on first use.
    A file must hold the certificate and either the key too, or have the key
    beside it as ``<stem>-key.pem`` (the ``openssl req -keyout`` / curl naming).
    """
    target = Path(path).expanduser() if path is not None else identity_home()
    if not target.exists() and target.suffix in IDENTITY_FILE_SUFFIXES:
        raise errors.ConfigError(
            f"identity file {target} does not exist",
            details=["--identity takes a directory (created on first use) or an existing PEM file"],
        )
    if path is None or target.is_dir() or not target.exists():
        home = ensure_private_dir(target)
        created = _create_in(home)
        return _load(home / CERT_FILE, home / KEY_FILE, home, created)
    sibling = target.with_name(f"{target.stem}-key{target.suffix}")
    key_path = sibling if sibling.is_file() else target
    return _load(target, key_path, identity_home(), False)
