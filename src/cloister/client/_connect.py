"""Getting a verified :class:`CASClient`: resolve address, identity and pin; first contact.

First contact is refused unless the caller either hands over the CAS
certificate (``--cas-cert`` / ``$CLOISTER_CAS_CERT``) or explicitly asks for
``--insecure-first-contact``: then the certificate the CAS presents *now* is
pinned (like ssh's known_hosts), its fingerprint reported, and every later
connection must chain to it — a changed CAS certificate is a refusal, never a
silent re-pin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister.client._cas import DEFAULT_TIMEOUT, CASClient
from cloister.client._identity import (
    IDENTITY_FILE_SUFFIXES,
    ClientIdentity,
    identity_home,
    load_identity,
)
from cloister.client._trust import (
    CASAddress,
    Trust,
    find_trust,
    fingerprint,
    pin_path,
    read_certificate_file,
    resolve_address,
    save_pin,
)

#: the CAS's own certificate file in its state directory (``cloister cas serve --state``)
STATE_CERT_FILE = "cas-ca.pem"

Notice = Callable[[str], None]


def _ignore(_message: str) -> None:
    pass


def pins_home(identity: Path | str | None) -> Path:
    """Where pins live: the ``--identity`` directory (even before it exists), else the home."""
    if identity is not None:
        path = Path(identity).expanduser()
        if not path.is_file() and path.suffix not in IDENTITY_FILE_SUFFIXES:
            return path
    return identity_home()


def first_contact_refused(address: CASAddress) -> errors.ConfigError:
    return errors.ConfigError(
        f"no pinned certificate for the CAS at {address}: refusing to trust it blindly",
        details=[
            "give its certificate: --cas-cert FILE or CLOISTER_CAS_CERT=FILE "
            "(on the CAS host: cloister cas show-certificate --state DIR)",
            "or pin whatever it presents now (trust on first use): add "
            f"--insecure-first-contact, or run: cloister cas attest {address} "
            "--insecure-first-contact",
        ],
    )


@dataclass(frozen=True)
class FetchedCertificate:
    """A CAS certificate obtained WITHOUT verification (first contact)."""

    address: CASAddress
    #: what to pin: the CAS CA certificate, or the server certificate if no CA is reported
    pem: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.pem)


def fetch_certificate(
    address: CASAddress, *, timeout: float = DEFAULT_TIMEOUT
) -> FetchedCertificate:
    """The certificate the CAS at ``address`` presents, unverified.

    The CA certificate the CAS reports (``GET /v1/certificate``) is accepted
    only if it issued the server certificate of that same TLS connection.
    """
    reply = CASClient(address, None, timeout=timeout).request("GET", "/v1/certificate")
    if reply.peer_cert is None:
        raise errors.TLSError(f"the CAS at {address} presented no certificate")
    leaf = x509.load_der_x509_certificate(reply.peer_cert)
    leaf_pem = leaf.public_bytes(serialization.Encoding.PEM).decode("ascii")
    if reply.status == 404:
        return FetchedCertificate(address, leaf_pem)
    try:
        data = reply.json()
        ca_pem = str(data["certificate"])
        ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise errors.BadAnswer(
            f"the CAS at {address} did not report its certificate (HTTP {reply.status})",
            details=[f"is {address.url} a cloister CAS?"],
        ) from None
    if ca != leaf:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise errors.TLSError(
                f"the CAS at {address} reports a certificate that did not issue the one it "
                "presents: refusing to pin either",
                details=["someone may be intercepting the connection"],
            ) from None
    return FetchedCertificate(address, ca.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def pin_first_contact(
    address: CASAddress, home: Path, *, timeout: float = DEFAULT_TIMEOUT, notice: Notice = _ignore
) -> Trust:
    """Fetch, pin and announce the certificate of a CAS seen for the first time."""
    fetched = fetch_certificate(address, timeout=timeout)
    path = save_pin(home, address, fetched.pem)
    notice(
        f"WARNING: pinned the certificate of the CAS at {address} WITHOUT verification "
        f"(--insecure-first-contact): SHA-256 {fetched.fingerprint}, stored in {path}. "
        "Compare this fingerprint with the CAS operator's "
        "(openssl x509 -noout -fingerprint -sha256 -in STATE/cas-ca.pem)."
    )
    return Trust(fetched.pem, f"the pin {path}")


def connect(
    cas: str | None = None,
    *,
    cas_cert: Path | str | None = None,
    identity: Path | str | None = None,
    use_identity: bool = True,
    insecure_first_contact: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    notice: Notice = _ignore,
) -> CASClient:
    """A verified client for the CAS ``cas`` (``--cas``; see :func:`resolve_address`).

    ``use_identity=False`` for public routes (values): no client certificate
    is sent or created.  ``notice`` receives messages the user must see (a new
    identity, a new pin); the CLI prints them on stderr.
    """
    address = resolve_address(cas)
    home = pins_home(identity)
    trust = find_trust(address, home, cas_cert)
    if trust is None:
        if not insecure_first_contact:
            raise first_contact_refused(address)
        trust = pin_first_contact(address, home, timeout=timeout, notice=notice)
    client_identity: ClientIdentity | None = None
    if use_identity:
        client_identity = load_identity(identity)
        if client_identity.created:
            notice(
                f"created client identity {client_identity.key_hash} "
                f"in {client_identity.home}"
            )
    return CASClient(address, trust, client_identity, timeout=timeout)


@dataclass(frozen=True)
class Attested:
    address: CASAddress
    #: "verified" (against --cas-cert / $CLOISTER_CAS_CERT / an existing pin) or "unverified"
    how: str
    source: str
    fingerprint: str
    pin: Path

    @property
    def url(self) -> str:
        return self.address.url


def attest(
    cas: str,
    *,
    cas_cert: Path | str | None = None,
    identity: Path | str | None = None,
    insecure_first_contact: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    notice: Notice = _ignore,
) -> Attested:
    """Check the CAS at ``cas`` against a certificate and pin it for later commands.

    With ``cas_cert`` the CAS must chain to that file, which then replaces any
    earlier pin (the user vouched for it).  Without it, an existing pin (or
    ``$CLOISTER_CAS_CERT``) must match; with neither, only
    ``insecure_first_contact`` pins what the CAS presents.
    """
    address = resolve_address(cas)
    home = pins_home(identity)
    trust = find_trust(address, home, cas_cert)
    if trust is None:
        if not insecure_first_contact:
            raise first_contact_refused(address)
        trust = pin_first_contact(address, home, timeout=timeout, notice=notice)
        how, pin = "unverified", pin_path(home, address)
    else:
        CASClient(address, trust, timeout=timeout).healthz()  # raises on a mismatch
        how, pin = "verified", save_pin(home, address, trust.pem)
    return Attested(address, how, trust.source, trust.fingerprint, pin)


@dataclass(frozen=True)
class ShownCertificate:
    pem: str
    source: str
    verified: bool


def show_certificate(
    *,
    state: Path | str | None = None,
    cas: str | None = None,
    cas_cert: Path | str | None = None,
    identity: Path | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ShownCertificate:
    """The CAS certificate: from a local state dir, or from the network.

    Over the network it is verified when a pin (or ``cas_cert``) exists, and
    reported as unverified otherwise.
    """
    if state is not None:
        path = Path(state).expanduser() / STATE_CERT_FILE
        return ShownCertificate(read_certificate_file(path, "CAS certificate"), str(path), True)
    address = resolve_address(cas)
    trust = find_trust(address, pins_home(identity), cas_cert)
    if trust is None:
        fetched = fetch_certificate(address, timeout=timeout)
        return ShownCertificate(fetched.pem, f"{address.url} (unverified)", False)
    pem = CASClient(address, trust, timeout=timeout).certificate()
    return ShownCertificate(pem, f"{address.url} (verified against {trust.source})", True)
