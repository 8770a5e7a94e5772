"""``cloister las serve|platform-id``: the node-local quoting agent."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from cloister import attest
from cloister.attest import _las

_REMOTE_HELP = (
    "also listen on and answer non-loopback addresses. The LAS signs a quote for "
    "whoever asks, with claims the caller chooses: anyone who can reach it can obtain "
    "evidence for any measurement. Only for simulation set-ups where every host that "
    "can reach it is trusted."
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("las", help="the local attestation service (quoting agent)")
    commands = parser.add_subparsers(dest="las_command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve quotes to local workloads",
        description=(
            "Serve simulation quotes signed with this node's platform key (created 0600 in "
            "the state directory on first start). Simulation evidence proves which code was "
            "launched to someone who trusts the host, and nothing against a host "
            "administrator."
        ),
    )
    serve.add_argument("--state", type=Path, default=None, metavar="DIR",
                       help="state directory (default: $CLOISTER_LAS_STATE or ~/.cloister/las)")
    serve.add_argument("--listen", default=attest.DEFAULT_LISTEN, metavar="HOST:PORT",
                       help=f"address to listen on (default: {attest.DEFAULT_LISTEN})")
    serve.add_argument("--allow-remote", action="store_true", help=_REMOTE_HELP)
    serve.set_defaults(func=_serve)

    show = commands.add_parser(
        "platform-id", help="print the platform id of a running LAS (for a policy's platforms:)"
    )
    show.add_argument("--las", default=None, metavar="ADDR",
                      help="LAS address (default: $CLOISTER_LAS_ADDR, $SCONE_LAS_ADDR, "
                           "127.0.0.1:18766)")
    show.set_defaults(func=_platform_id)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    state = args.state if args.state is not None else _las.default_state_dir()
    server = attest.make_server(state, args.listen, allow_remote=args.allow_remote)
    signal.signal(signal.SIGTERM, _stop)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"cloister las: listening on {host}:{port}, platform id {server.platform_id}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _platform_id(args: argparse.Namespace) -> int:
    print(attest.LasClient(args.las).platform()["platform_id"])
    return 0
