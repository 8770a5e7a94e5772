"""``cloister run [--] [COMMAND…]``: attest and launch (configured by environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cloister.cli import _isolated as isolated

if TYPE_CHECKING:  # argparse only for the options: `run` alone needs no parser (launch)
    import argparse

#: the flag -> the variable it overrides (flags win over the environment)
_FLAG_VARIABLES = (("cas", "CLOISTER_CAS_ADDR"), ("cas_cert", "CLOISTER_CAS_CERT"),
                   ("las", "CLOISTER_LAS_ADDR"), ("config_id", "CLOISTER_CONFIG_ID"))


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    flags = [f"--{flag.replace('_', '-')}={value}"
             for flag, _ in _FLAG_VARIABLES if (value := getattr(args, flag))]
    # the LAS quotes only for `python -I -m cloister.cli run`: become that process first
    # (`run` first: the LAS checks that the arguments start `-I -m cloister.cli run`)
    isolated.reexec_isolated(["run", *(["--verbose"] if args.verbose else []), *flags,
                               "--", *command])
    env = dict(os.environ)
    for flag, variable in _FLAG_VARIABLES:
        value = getattr(args, flag)
        if value:
            env[variable] = value
    return launch(command, env)


def launch(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Attest and launch ``command`` (the policy's Python program when empty) in this,
    the isolated process, configured by ``env``."""
    from cloister import runtime  # noqa: PLC0415 - after the restart: imported once

    return runtime.run(command, runtime.RunSettings.from_env(env))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import argparse  # noqa: PLC0415 - see the import above

    run = subparsers.add_parser(
        "run",
        help="attest to the CAS and launch the configured program",
        description=(
            "Attest to the CAS and launch the program of the service named by "
            "CLOISTER_CONFIG_ID=session/service (or SCONE_CONFIG_ID). Without COMMAND, or "
            "with a Python interpreter, the policy's Python program runs inside this process; "
            "with a native program, it is measured, then exec'd with the policy's arguments. "
            "It restarts itself as `python -I -m cloister.cli run` (isolated) and is not "
            "dumpable; PYTHON*, LD_PRELOAD, LD_AUDIT and LD_LIBRARY_PATH make the LAS refuse. "
            "Environment: CLOISTER_CAS_ADDR (or SCONE_CAS_ADDR; default cas), "
            "CLOISTER_LAS_ADDR (or SCONE_LAS_ADDR; a socket path or HOST:PORT; default "
            "/run/cloister/las.sock), "
            "CLOISTER_CAS_CERT (the pinned CAS certificate, required), "
            "CLOISTER_RETRY_SECONDS (how long to wait for an unreachable CAS/LAS; default 30)."
        ),
    )
    run.add_argument("--cas", metavar="ADDR", default=None,
                     help="CAS address HOST[:PORT] (default $CLOISTER_CAS_ADDR, $SCONE_CAS_ADDR, "
                     "then cas; port 8081)")
    run.add_argument("--cas-cert", metavar="FILE", default=None,
                     help="the pinned CAS certificate (default $CLOISTER_CAS_CERT; required)")
    run.add_argument("--las", metavar="ADDR", default=None,
                     help="LAS address (default $CLOISTER_LAS_ADDR, $SCONE_LAS_ADDR, "
                     "127.0.0.1:18766)")
    run.add_argument("--config-id", metavar="SESSION/SERVICE", default=None,
                     help="the service to run (default $CLOISTER_CONFIG_ID, $SCONE_CONFIG_ID)")
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the program to measure and run (default: this Python)",
    )
    run.set_defaults(func=_run)
