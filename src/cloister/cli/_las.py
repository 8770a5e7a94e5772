"""``cloister las serve|platform-id|enroll``: the node-local quoting agent."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from cloister import attest, errors
from cloister._prctl import seal_off_server
from cloister.attest import _evidence, _las
from cloister.attest.simulation import load_or_create_platform_key
from cloister.attest.tpm import _quoter as _tpm_quoter
from cloister.cli._output import emit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("las", help="the local attestation service (quoting agent)")
    commands = parser.add_subparsers(dest="las_command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve quotes to local workloads",
        description=(
            "Serve quotes to local workloads on a Unix socket (default "
            f"{attest.DEFAULT_SOCKET}, mode 0666, its directory created 0755): for each caller "
            "the LAS asks the kernel who it is (SO_PEERCRED), measures what it runs "
            "(/proc/PID/exe, libpython, the cloister runtime), refuses callers into which "
            "foreign code can be loaded, and signs that with the caller's uid and gid using "
            "this node's platform key (created 0600 in the state directory on first start) "
            "or, with --tpm, a TPM quote. Run it as root to serve other users. Simulation "
            "evidence proves what the LAS measured to someone who trusts the host, and "
            "nothing against a host administrator."
        ),
    )
    serve.add_argument("--state", type=Path, default=None, metavar="DIR",
                       help="state directory (default: $CLOISTER_LAS_STATE or ~/.cloister/las)")
    serve.add_argument("--socket", default=None, metavar="PATH", dest="socket_path",
                       help=f"Unix socket to serve on (default: {attest.DEFAULT_SOCKET})")
    serve.add_argument("--listen", default=None, metavar="HOST:PORT",
                       help="serve loopback TCP instead (e.g. 127.0.0.1:18766; simulation only: "
                            "callers are found through /proc/net/tcp)")
    _tpm_arguments(serve)
    serve.add_argument(
        "--evidence", default=None, metavar="TYPE",
        help="evidence type to quote: simulation (default), tpm (same as --tpm), sev-snp or "
             "tdx (configfs-tsm in a confidential VM)")
    serve.add_argument(
        "--quoter-option", action="append", default=[], metavar="KEY=VALUE",
        help="a setting of the evidence type's quoter, e.g. tsm=/sys/kernel/config/tsm/report "
             "or device=/dev/sev-guest (repeatable)")
    serve.set_defaults(func=_serve)

    enroll = commands.add_parser(
        "enroll",
        help="print this node's platform id (and PCR values) for a policy's platforms:",
        description=(
            "Create or load the platform key (or, with --tpm, the TPM attestation key, "
            "recorded in the state directory) and print its platform id alone on the first "
            "line; with --show-pcrs also the current SHA-256 PCR values."
        ),
    )
    enroll.add_argument("--state", type=Path, default=None, metavar="DIR",
                        help="state directory (default: $CLOISTER_LAS_STATE or ~/.cloister/las)")
    _tpm_arguments(enroll)
    enroll.add_argument("--show-pcrs", action="store_true",
                        help="also print the current PCR values of the --pcrs selection (--tpm)")
    enroll.set_defaults(func=_enroll)

    show = commands.add_parser(
        "platform-id", help="print the platform id of a running LAS (for a policy's platforms:)"
    )
    show.add_argument("--las", default=None, metavar="ADDR",
                      help="LAS address: a socket path or HOST:PORT (default: "
                           "$CLOISTER_LAS_ADDR, $SCONE_LAS_ADDR, /run/cloister/las.sock)")
    show.set_defaults(func=_platform_id)


def _tpm_arguments(parser: Any) -> None:
    parser.add_argument(
        "--tpm", default=None, metavar="TCTI",
        help="quote with this TPM 2.0 (e.g. device:/dev/tpmrm0 or "
             "swtpm:host=127.0.0.1,port=2321): evidence type tpm, hardware-rooted platform id",
    )
    parser.add_argument("--pcrs", default="0-7", metavar="SEL",
                        help="SHA-256 PCRs to quote with --tpm, e.g. 0-7 or 0,2,7 (default: 0-7)")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    seal_off_server()  # before any key is read or made
    state = args.state if args.state is not None else _las.default_state_dir()
    evidence, options = _quoter_choice(args)
    server = attest.make_server(state, args.listen, socket_path=args.socket_path,
                                evidence=evidence, options=options)
    signal.signal(signal.SIGTERM, _stop)
    print(f"cloister las: serving on {server.where}, {server.evidence_type} evidence, "
          f"platform id {server.platform_id}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _quoter_choice(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The evidence type and quoter options the command line asks for."""
    options: dict[str, str] = {}
    for item in args.quoter_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"--quoter-option {item!r} is not KEY=VALUE")
        options[key] = value
    if args.tpm is not None:
        if args.evidence not in (None, "tpm"):
            raise errors.ConfigError(f"--tpm quotes tpm evidence, not {args.evidence}")
        return "tpm", {"tcti": args.tpm, "pcrs": args.pcrs, **options}
    return args.evidence or "simulation", options


def _platform_id(args: argparse.Namespace) -> int:
    platform = attest.LasClient(args.las).platform()
    emit(args, platform, platform["platform_id"])
    return 0


def _enroll(args: argparse.Namespace) -> int:
    state = args.state if args.state is not None else _las.default_state_dir()
    if args.tpm is None:
        if args.show_pcrs:
            raise errors.ConfigError("--show-pcrs needs --tpm TCTI",
                                     details=["simulation platforms have no PCRs"])
        public = load_or_create_platform_key(state).public_key()
        platform_id = attest.platform_id(_evidence.spki_der(public))
        emit(args, {"platform_id": platform_id, "evidence_type": "simulation"}, platform_id)
        return 0
    quoter = attest.TpmQuoter(args.tpm, state, attest.parse_pcrs(args.pcrs))
    if quoter.ek_certificate is None:
        print(f"note: {_tpm_quoter.NO_EK_CERTIFICATE}", file=sys.stderr)
    pcrs = quoter.current_pcrs() if args.show_pcrs else {}
    emit(args, {"platform_id": quoter.platform_id, "evidence_type": "tpm",
                "pcrs": {str(pcr): value for pcr, value in pcrs.items()}},
         [quoter.platform_id, *(f"sha256:{pcr} {value}" for pcr, value in pcrs.items())])
    return 0
