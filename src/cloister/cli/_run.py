"""``cloister run [--] [COMMAND…]``: attest and launch (configured by environment)."""

from __future__ import annotations

import argparse

from cloister import runtime


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return runtime.run(command)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="attest to the CAS and launch the configured program",
        description=(
            "Attest to the CAS and launch the program of the service named by "
            "CLOISTER_CONFIG_ID=session/service (or SCONE_CONFIG_ID). Without COMMAND, or "
            "with a Python interpreter, the policy's Python program runs inside this process; "
            "with a native program, it is measured, then exec'd with the policy's arguments. "
            "Environment: CLOISTER_CAS_ADDR (or SCONE_CAS_ADDR; default cas), "
            "CLOISTER_LAS_ADDR (or SCONE_LAS_ADDR; default 127.0.0.1:18766), "
            "CLOISTER_CAS_CERT (the pinned CAS certificate, required), "
            "CLOISTER_RETRY_SECONDS (how long to wait for an unreachable CAS/LAS; default 30)."
        ),
    )
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the program to measure and run (default: this Python)",
    )
    run.set_defaults(func=_run)
