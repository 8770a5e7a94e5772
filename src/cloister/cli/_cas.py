"""``cloister cas …``: the CAS server side (``serve``); client subcommands plug in here too.

Each subcommand has its own ``_add_<name>(cas_subparsers)`` function; to add
one (``show-certificate``, ``attest``), write another and call it from
:func:`register`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cloister import errors
from cloister._prctl import seal_off_server
from cloister.cli import _cas_migrate
from cloister.cli._cas_client import register_client_commands
from cloister.cli._cas_seal import register as register_seal_commands
from cloister.cli._types import bounded_int

DEFAULT_STATE = "~/.cloister/cas"


def register(subparsers: Any) -> None:
    cas = subparsers.add_parser("cas", help="the configuration and attestation service (CAS)")
    cas_sub = cas.add_subparsers(dest="cas_command", metavar="SUBCOMMAND", required=True)
    _add_serve(cas_sub)
    register_client_commands(cas_sub)  # show-certificate, attest (cloister.cli._cas_client)
    _cas_migrate.register(cas_sub)  # migrate
    register_seal_commands(cas_sub)  # init, unseal, rotate-key, migrate-state (._cas_seal)


def _add_serve(cas_sub: Any) -> None:
    p = cas_sub.add_parser(
        "serve",
        help="run the CAS (HTTPS, client certificates, SQLite or PostgreSQL store)",
        description="Run the CAS on a state directory made by `cloister cas init` (or "
        "converted by `cloister cas migrate-state`). tpm and file seals unseal at start; "
        "shamir starts sealed until `cloister cas unseal`.",
    )
    p.add_argument(
        "--state", default=os.environ.get("CLOISTER_CAS_STATE", DEFAULT_STATE),
        help=f"state directory (default $CLOISTER_CAS_STATE or {DEFAULT_STATE})",
    )
    p.add_argument("--listen", default="0.0.0.0:8081", help="HOST:PORT (default 0.0.0.0:8081)")
    add_store_options(p)
    p.add_argument(
        "--master-key-file", type=Path, default=None,
        help="file seal: the key file, if it moved since cas init",
    )
    p.add_argument("--tpm", metavar="TCTI", default=None,
                   help="tpm seal: the TPM, if not the one given at cas init")
    p.add_argument(
        "--init-file-seal", type=Path, default=None, metavar="KEYFILE",
        help="if --state is not initialised yet (or is of the first release), initialise "
        "(or migrate) it with the file seal, its key in KEYFILE outside the state directory "
        "(containers, development; see cloister cas init for the tpm and shamir seals)",
    )
    p.add_argument(
        "--accept-rollback", type=bounded_int(0, 1 << 62, "accept-rollback"), default=None,
        metavar="HEAD",
        help="tpm seal: serve a restored older copy whose store head counter is HEAD "
        "(the refusal names it); later writes of the newer state are lost",
    )
    p.add_argument(
        "--san", action="append", default=[], metavar="NAME",
        help="extra DNS name or IP for the server certificate (repeatable)",
    )
    p.add_argument(
        "--max-body", type=bounded_int(1024, 1 << 30, "max-body"), default=1024 * 1024,
        help="request body limit in bytes (1 KiB .. 1 GiB)"
    )
    p.add_argument("--threads", type=bounded_int(1, 1024, "threads"), default=None,
                   help="worker threads (default 64; the same as --limit workers=N)")
    p.add_argument("--processes", type=bounded_int(1, 64, "processes"), default=1,
                   help="CAS processes sharing the port (SO_REUSEPORT), so that more than "
                   "one core serves; file seal only (default 1)")
    p.add_argument(
        "--limit", action="append", default=[], metavar="NAME=VALUE",
        help="change one protective limit, e.g. --limit nonce_rate=100 (repeatable; the "
        "names and defaults are in the README and cloister.cas.Limits)",
    )
    p.add_argument(
        "--creators", type=Path, default=None, metavar="FILE",
        help="only the identities in FILE (key hashes or PEM certificates) may create "
        "top-level sessions; default: every identity",
    )
    p.add_argument("--audit-dir", type=Path, default=None, metavar="DIR",
                   help="where audit.log and its rotations go (default: the state directory)")
    p.add_argument(
        "--collateral", type=Path, default=None, metavar="DIR",
        help="attestation collateral: VCEK/VLEK certificates, TDX TCB info, QE identity and "
        "CRLs; DIR/trusted-roots/ adds trusted roots (read once at start)",
    )
    p.set_defaults(func=_serve)


def add_store_options(p: argparse.ArgumentParser, flag: str = "--store",
                      *, required: bool = False) -> None:
    """``--store URL`` or ``--store-file FILE`` (a URL with a password stays out of argv)."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument(
        flag, default=None, dest="store", metavar="URL",
        help="store: sqlite (default, STATE/cas.db), sqlite:///ABSOLUTE/PATH or "
        "postgresql://USER@HOST[:PORT]/DB[?sslmode=verify-full&sslrootcert=FILE&passfile=FILE] "
        "(shared by CAS replicas)",
    )
    group.add_argument(
        f"{flag}-file", type=Path, default=None, dest="store_file", metavar="FILE",
        help=f"read the {flag} URL from FILE (mode 0600 or stricter), e.g. a mounted Secret",
    )


def store_url(args: argparse.Namespace) -> str:
    """The store URL of ``--store``/``--store-file`` (default ``sqlite``)."""
    if args.store_file is None:
        return str(args.store or "sqlite")
    from cloister._files import check_private_file  # noqa: PLC0415

    check_private_file(args.store_file)
    url = Path(args.store_file).read_text().strip()
    if not url:
        raise errors.ConfigError(f"store URL file {args.store_file} is empty")
    return url


def _serve(args: argparse.Namespace) -> int:
    from cloister.cas import CASServer, ServerConfig  # noqa: PLC0415 — keep CLI start fast
    from cloister.cas._limits import Limits, with_overrides  # noqa: PLC0415
    from cloister.cas._server import parse_listen  # noqa: PLC0415

    seal_off_server()  # before any key is read or made
    pairs = [f"max_body={args.max_body}"]
    if args.threads is not None:
        pairs.append(f"workers={args.threads}")
    state = Path(args.state).expanduser()
    if args.init_file_seal is not None:
        from cloister.cas._state import ensure_file_seal, prepare_state  # noqa: PLC0415

        prepare_state(state)
        ensure_file_seal(state, args.init_file_seal, store_url=store_url(args))
    config = ServerConfig(
        state=state,
        listen=parse_listen(args.listen),
        store_url=store_url(args),
        master_key_file=args.master_key_file or args.init_file_seal,
        tpm=args.tpm,
        accept_rollback=args.accept_rollback,
        sans=tuple(args.san),
        limits=with_overrides(Limits(), [*pairs, *args.limit]),
        creators_file=args.creators,
        audit_dir=args.audit_dir,
        collateral=args.collateral,
        processes=args.processes,
    )
    CASServer(config).serve_forever()
    return 0
