"""``cloister platform enroll|list|remove``: the quoting keys whose evidence counts for you.

Simulation evidence (and TPM evidence without an EK chain) counts only from
a platform the CAS knows: one a service lists under ``platforms:``, or one
the session's owner enrolled with this command.  Enrol a LAS after checking
that its platform id is really that node's (``cloister las platform-id`` on
the node, or ``cloister las enroll`` where its state lives).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from cloister import errors
from cloister.cli._cas_client import add_cas_options, client_from_args
from cloister.cli._output import emit

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _platform_id(args: argparse.Namespace) -> str:
    if args.platform_id is not None and args.las is not None:
        raise errors.ConfigError("give a PLATFORM_ID or --las, not both")
    if args.platform_id is not None:
        if not _HEX64.fullmatch(args.platform_id):
            raise errors.ConfigError(f"{args.platform_id!r} is not a platform id (64 hex digits)",
                                     details=["`cloister las platform-id` prints it"])
        return str(args.platform_id).lower()
    from cloister.attest import LasClient  # noqa: PLC0415 - keep CLI start fast

    return LasClient(args.las).platform()["platform_id"]


def _enroll(args: argparse.Namespace) -> int:
    platform_id = _platform_id(args)
    cas = client_from_args(args)
    answer = cas.request_json("POST", "/v1/platforms", json.dumps(
        {"platform_id": platform_id, "label": args.label}).encode())
    state = "enrolled" if answer.get("created") else "already enrolled"
    emit(args, answer, f"{platform_id} {state} for sessions of identity {answer.get('owner')}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    platform_id = _platform_id(args)
    answer = client_from_args(args).request_json("DELETE", f"/v1/platforms/{platform_id}")
    state = "removed" if answer.get("removed") else "was not enrolled"
    emit(args, answer, f"{platform_id} {state} for sessions of identity {answer.get('owner')}")
    return 0


def _list(args: argparse.Namespace) -> int:
    answer = client_from_args(args).request_json("GET", "/v1/platforms")
    emit(args, answer, [f"{item.get('platform_id')} {item.get('label', '')}".rstrip()
                        for item in answer.get("platforms", [])])
    return 0


def _add_platform_choice(parser: argparse.ArgumentParser, id_help: str) -> None:
    """PLATFORM_ID or --las ADDR (read by :func:`_platform_id`)."""
    parser.add_argument("platform_id", metavar="PLATFORM_ID", nargs="?", default=None,
                        help=id_help)
    parser.add_argument("--las", metavar="ADDR", default=None,
                        help="read the id from this LAS (a socket path or HOST:PORT)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "platform", help="enrol the LAS platforms whose evidence counts for your sessions")
    commands = parser.add_subparsers(dest="platform_command", metavar="COMMAND", required=True)
    enroll = commands.add_parser(
        "enroll", help="vouch for a platform (a LAS's quoting key) on the CAS",
        description=(
            "Record on the CAS that simulation (or TPM) evidence signed by this platform "
            "counts for every session your identity created. Without a PLATFORM_ID, ask "
            "the LAS at --las (default $CLOISTER_LAS_ADDR, then /run/cloister/las.sock) for "
            "its id: do that only on the node itself. Audited on the CAS."
        ),
    )
    _add_platform_choice(enroll, "64 hex digits (cloister las platform-id)")
    enroll.add_argument("--label", default="", help="a note kept with the enrolment")
    add_cas_options(enroll)
    enroll.set_defaults(func=_enroll)
    listing = commands.add_parser("list", help="the platforms your identity enrolled")
    add_cas_options(listing)
    listing.set_defaults(func=_list)
    remove = commands.add_parser(
        "remove", help="withdraw your enrolment of a platform (a retired node, a suspect key)",
        description=(
            "Withdraw on the CAS your enrolment of a platform: from then on evidence "
            "signed by it no longer counts for the sessions your identity created "
            "(unless a service lists it under platforms:). Audited on the CAS."
        ),
    )
    _add_platform_choice(remove, "64 hex digits (cloister platform list)")
    add_cas_options(remove)
    remove.set_defaults(func=_remove)
