"""Client-side CLI pieces: the shared ``--cas …`` options, ``cas show-certificate``, ``cas attest``.

:func:`register_client_commands` adds the two ``cloister cas`` subcommands
(called from :mod:`cloister.cli._cas`); :func:`add_cas_options` and
:func:`client_from_args` are shared by ``cloister session`` and ``cloister values``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cloister import errors
from cloister.cli._output import emit, notice
from cloister.cli._types import seconds

if TYPE_CHECKING:
    from cloister.client import CASClient

#: seconds per request (== cloister.client.DEFAULT_TIMEOUT; not imported: keeps start fast)
DEFAULT_TIMEOUT = 30.0


def add_cas_options(
    parser: argparse.ArgumentParser, *, identity: bool = True, address: bool = True
) -> None:
    """``--cas``, ``--cas-cert``, ``--insecure-first-contact``, ``--timeout``, ``--identity``.

    ``identity=False`` hides ``--identity`` (it still says where pins live).
    """
    if address:
        parser.add_argument(
            "--cas", metavar="ADDR", default=None,
            help="CAS address HOST[:PORT] (default $CLOISTER_CAS_ADDR, $SCONE_CAS_ADDR, "
            "then cas; port 8081)",
        )
    parser.add_argument(
        "--cas-cert", metavar="FILE", default=None,
        help="PEM certificate the CAS must present (default $CLOISTER_CAS_CERT, then the "
        "certificate pinned for ADDR)",
    )
    parser.add_argument(
        "--insecure-first-contact", action="store_true",
        help="no pin yet: trust and pin the certificate the CAS presents now (prints its "
        "fingerprint)",
    )
    parser.add_argument(
        "--identity", metavar="FILE_OR_DIR", default=None,
        help="client key+certificate: a directory (created on first use) or a PEM file; "
        "default $CLOISTER_HOME or ~/.cloister" if identity else argparse.SUPPRESS,
    )
    parser.add_argument(
        "--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"network timeout per request (default {DEFAULT_TIMEOUT:g})",
    )


def client_from_args(args: argparse.Namespace, *, use_identity: bool = True) -> CASClient:
    """A verified client from the ``--cas …`` options (stderr notices for new pins/identity)."""
    from cloister.client import connect  # noqa: PLC0415 — keep CLI start fast

    return connect(
        args.cas,
        cas_cert=args.cas_cert,
        identity=args.identity,
        use_identity=use_identity,
        insecure_first_contact=args.insecure_first_contact,
        timeout=args.timeout,
        notice=notice,
    )


def _show_certificate(args: argparse.Namespace) -> int:
    if args.state is not None and args.cas is not None:
        raise errors.ConfigError("give either --state DIR or --cas ADDR, not both")
    from cloister import client as cas_client  # noqa: PLC0415 — keep CLI start fast

    shown = cas_client.show_certificate(
        state=args.state, cas=args.cas, cas_cert=args.cas_cert, identity=args.identity,
        timeout=args.timeout,
    )
    fp = cas_client.fingerprint(shown.pem)
    emit(args, {"certificate": shown.pem, "fingerprint": fp, "source": shown.source,
                "verified": shown.verified}, shown.pem)
    if shown.verified:
        notice(f"certificate from {shown.source}; SHA-256 {fp}")
    else:
        notice(
            f"UNVERIFIED: fetched from {shown.source} without any check; SHA-256 {fp}. "
            "Compare it with the one in the CAS state directory before trusting it."
        )
    return 0


def _attest(args: argparse.Namespace) -> int:
    from cloister.client import attest  # noqa: PLC0415 — keep CLI start fast

    result = attest(
        args.addr, cas_cert=args.cas_cert, identity=args.identity,
        insecure_first_contact=args.insecure_first_contact, timeout=args.timeout, notice=notice,
    )
    data = {"address": str(result.address), "verified": result.how == "verified",
            "source": result.source, "fingerprint": result.fingerprint, "pin": str(result.pin)}
    if result.how == "verified":
        emit(args, data, f"CAS {args.addr} at {result.url} is trustworthy")
        notice(f"verified against {result.source} (SHA-256 {result.fingerprint}); "
               f"pinned in {result.pin}")
    else:
        emit(args, data, f"CAS {args.addr} at {result.url} is NOT verified: pinned its "
             f"certificate on first contact (SHA-256 {result.fingerprint}) in {result.pin}")
    return 0


def register_client_commands(cas_subparsers: Any) -> None:
    """Add ``show-certificate`` and ``attest`` to the ``cloister cas`` subparsers."""
    show = cas_subparsers.add_parser(
        "show-certificate",
        help="print the CAS certificate (PEM) from a state directory or the network",
        description="Print the CAS certificate clients pin. With --state it is read from the "
        "CAS's own state directory (authoritative); otherwise it is fetched from --cas, "
        "verified if a pin exists and reported UNVERIFIED if not.",
    )
    show.add_argument("--state", metavar="DIR", default=None, help="CAS state directory")
    add_cas_options(show)
    show.set_defaults(func=_show_certificate)

    attest = cas_subparsers.add_parser(
        "attest",
        help="check a CAS against a certificate and pin it for later commands",
        description="Verify the CAS at ADDR against --cas-cert FILE (or $CLOISTER_CAS_CERT, or "
        "its existing pin) and pin it. --insecure-first-contact pins what it presents now.",
    )
    attest.add_argument("addr", metavar="ADDR", help="CAS address HOST[:PORT] (port 8081)")
    add_cas_options(attest, address=False)
    attest.set_defaults(func=_attest)
