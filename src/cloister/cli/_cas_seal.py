"""``cloister cas init | unseal | rotate-key | migrate-state``: the seal of the master key.

Registered from :mod:`cloister.cli._cas` by :func:`register`.  The work is in
:mod:`cloister.cas._state`; these functions parse, call it, and print.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from cloister import errors
from cloister.cli._cas_client import add_cas_options, client_from_args
from cloister.cli._output import notice
from cloister.cli._types import bounded_int

DEFAULT_STATE = "~/.cloister/cas"


def _state_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state", default=os.environ.get("CLOISTER_CAS_STATE", DEFAULT_STATE),
        help=f"state directory (default $CLOISTER_CAS_STATE or {DEFAULT_STATE})",
    )
    from cloister.cli._cas import add_store_options  # noqa: PLC0415 — _cas imports this module

    add_store_options(p)


def _seal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seal", choices=("tpm", "shamir", "file"), required=True,
                   help="tpm: sealed to this machine's TPM; shamir: N unseal shares, K needed "
                   "at every start; file: a key file outside the state directory (development)")
    p.add_argument("--key-file", type=Path, default=None,
                   help="--seal file: the key file to create (must lie outside --state)")
    p.add_argument("--key-shares", type=bounded_int(1, 255, "key-shares"), default=5,
                   help="--seal shamir: number of shares N (default 5)")
    p.add_argument("--key-threshold", type=bounded_int(1, 255, "key-threshold"), default=3,
                   help="--seal shamir: shares K needed to unseal (default 3)")
    p.add_argument("--share-file", type=Path, action="append", default=[], metavar="FILE",
                   help="--seal shamir: write share i to the i-th FILE (0600; give N of them); "
                   "default: print them")
    p.add_argument("--tpm", metavar="TCTI", default=None,
                   help="--seal tpm: the TPM (device:/dev/tpmrm0, swtpm:host=H,port=P)")
    p.add_argument("--pcrs", default="",
                   help="--seal tpm: also bind to these SHA-256 PCR values, e.g. 0-7 or 0,7")


def _store(args: argparse.Namespace) -> str:
    from cloister.cli._cas import store_url  # noqa: PLC0415

    return store_url(args)


def _options(args: argparse.Namespace) -> Any:
    from cloister.cas import SealOptions  # noqa: PLC0415 — keep CLI start fast

    pcrs: tuple[int, ...] = ()
    if args.pcrs:
        from cloister.attest import parse_pcrs  # noqa: PLC0415

        pcrs = parse_pcrs(args.pcrs)
    if args.seal == "shamir" and args.share_file and len(args.share_file) != args.key_shares:
        raise errors.ConfigError(
            f"{len(args.share_file)} --share-file given for {args.key_shares} shares",
            details=["give one --share-file per share, or none to print them"])
    return SealOptions(seal=args.seal, key_file=args.key_file, shares=args.key_shares,
                       threshold=args.key_threshold, tpm=args.tpm, pcrs=pcrs)


def _hand_out(args: argparse.Namespace, shares: list[str], threshold: int) -> None:
    if not shares:
        return
    if args.share_file:
        from cloister._files import write_private_file  # noqa: PLC0415

        for path, share in zip(args.share_file, shares, strict=True):
            write_private_file(path, (share + "\n").encode())
        notice(f"wrote {len(shares)} unseal shares (0600) to "
               + ", ".join(str(p) for p in args.share_file))
    else:
        for i, share in enumerate(shares, 1):
            print(f"Unseal share {i}: {share}")
    notice(f"{threshold} of these {len(shares)} shares unseal the CAS at every start. They are "
           "shown only now: give each to a different person; none is stored.")


def _init(args: argparse.Namespace) -> int:
    from cloister.cas import init_state  # noqa: PLC0415

    opts = _options(args)
    state = Path(args.state).expanduser()
    shares = init_state(state, opts, store_url=_store(args), sans=tuple(args.san))
    notice(f"initialised the CAS state {state} with the {opts.seal} seal")
    _hand_out(args, shares, opts.threshold)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cloister.cas import migrate_state  # noqa: PLC0415

    opts = _options(args)
    state = Path(args.state).expanduser()
    shares = migrate_state(state, opts, store_url=_store(args),
                           old_key_file=args.old_master_key_file)
    if shares is None:
        notice(f"the CAS state {state} is already of this release: nothing to migrate")
        return 0
    notice(f"migrated the CAS state {state}: texts, secrets and keys sealed under the "
           f"{opts.seal} seal; master.key and the plaintext key files removed")
    _hand_out(args, shares, opts.threshold)
    return 0


def _read_shares(files: list[Path]) -> list[str]:
    if files:
        return [p.read_text().strip() for p in files]
    if not sys.stdin.isatty():
        return [line.strip() for line in sys.stdin if line.strip()]
    return []


def _unseal(args: argparse.Namespace) -> int:
    client = client_from_args(args, use_identity=False)
    client.allow_sealed()
    shares = _read_shares(args.share_file)
    interactive = not shares
    answer: dict[str, Any] = {}
    while True:
        if interactive:
            share = getpass.getpass("Unseal share (hidden): ").strip()
        elif shares:
            share = shares.pop(0)
        else:
            break
        import json  # noqa: PLC0415

        answer = client.request_json("POST", "/v1/sys/unseal",
                                     json.dumps({"share": share}).encode())
        if not answer.get("sealed"):
            print(f"CAS {client.address} is unsealed")
            return 0
        notice(f"share accepted: {answer.get('progress')} of {answer.get('threshold')}")
    print(f"CAS {client.address} is still sealed: {answer.get('progress', 0)} of "
          f"{answer.get('threshold', '?')} shares given")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from cloister.cas import ServerConfig, open_store, rotate_key  # noqa: PLC0415

    config = ServerConfig(state=Path(args.state).expanduser(), store_url=_store(args),
                          master_key_file=args.master_key_file, tpm=args.tpm)
    store = open_store(config, _read_shares(args.share_file))
    try:
        result = rotate_key(store)
    finally:
        store.close()
    print(f"data key term {result.term} is active; {result.rewrapped} blobs rewrapped"
          + (f", {result.remaining} still under older terms (rerun)" if result.remaining else ""))
    return 0


def register(cas_sub: Any) -> None:
    init = cas_sub.add_parser(
        "init", help="initialise a CAS state directory and seal its master key",
        description="Create a CAS state directory: a new master key behind the chosen seal "
        "(never stored in plaintext), the store, and the CAS's CA and server certificate.")
    _state_option(init)
    _seal_options(init)
    init.add_argument("--san", action="append", default=[], metavar="NAME",
                      help="extra DNS name or IP for the server certificate (repeatable)")
    init.set_defaults(func=_init)

    unseal = cas_sub.add_parser(
        "unseal", help="give unseal shares to a sealed CAS (shamir seal)",
        description="Send unseal shares to a CAS started with the shamir seal: from "
        "--share-file FILEs, from standard input (one per line), or typed at a hidden prompt.")
    add_cas_options(unseal, identity=False)
    unseal.add_argument("--share-file", type=Path, action="append", default=[], metavar="FILE")
    unseal.set_defaults(func=_unseal, identity=None)

    rotate = cas_sub.add_parser(
        "rotate-key", help="new data key; rewrap every sealed blob under it (CAS may run)",
        description="Add a data key to the keyring and rewrap every session text, secret and "
        "CAS key under it. Readers never stop; a running CAS picks up the new key. The shamir "
        "seal needs K shares (--share-file, or standard input).")
    _state_option(rotate)
    rotate.add_argument("--share-file", type=Path, action="append", default=[], metavar="FILE")
    rotate.add_argument("--master-key-file", type=Path, default=None,
                        help="--seal file: the key file, if it moved since init")
    rotate.add_argument("--tpm", metavar="TCTI", default=None,
                        help="--seal tpm: the TPM, if not the one given at init")
    rotate.set_defaults(func=_rotate)

    migrate = cas_sub.add_parser(
        "migrate-state", help="convert a state directory of the first release (master.key)",
        description="Seal everything in a state directory of the first release under a new "
        "master key behind the chosen seal, then remove master.key and the plaintext key "
        "files. Safe to interrupt: rerun the same command to finish.")
    _state_option(migrate)
    _seal_options(migrate)
    migrate.add_argument("--old-master-key-file", type=Path, default=None,
                         help="the first release's master key, if not STATE/master.key")
    migrate.set_defaults(func=_migrate)
