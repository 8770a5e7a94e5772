"""``cloister measure [PROGRAM]``: print the measurement a policy must list."""

from __future__ import annotations

import argparse
from typing import Any

from cloister import attest
from cloister.cli._output import emit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "measure",
        help="print the measurement (mrenclave) a policy must list for a program",
        description=(
            "Print the 64-hex measurement of PROGRAM for a service's mrenclaves. For a "
            "Python interpreter (or no PROGRAM: this one) it covers the interpreter "
            "executable and the cloister runtime files of this installation; for a native "
            "program, its executable. PROGRAM is looked up on PATH; symlinks are resolved."
        ),
    )
    parser.add_argument("program", nargs="?", metavar="PROGRAM",
                        help="interpreter or executable (default: this Python interpreter)")
    parser.set_defaults(func=_measure)


def _measure(args: argparse.Namespace) -> int:
    measurement = attest.measure(args.program)
    emit(args, {"program": args.program, "measurement": measurement}, measurement)
    return 0
