"""``cloister demo up|down``: the confidential patient service on this machine."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType

from cloister import demo
from cloister.cli._types import port
from cloister.demo._layout import API_PORT, CAS_PORT, DEFAULT_DIR, REDIS_PORT


def _say(text: str) -> None:
    print(text, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _up(args: argparse.Namespace) -> int:
    options = demo.DemoOptions(
        directory=Path(args.dir), app_dir=Path(args.app) if args.app else None,
        cas_port=args.cas_port, redis_port=args.redis_port,
        api_port=args.api_port, store=args.store,
    )
    # SIGTERM (e.g. from a supervisor) stops the demo as cleanly as Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        running = demo.up(options, _say)
    except KeyboardInterrupt:
        _say("interrupted; stopped what was started")
        return 130
    try:
        _instructions(running, args)
        if args.detach:
            return 0
        _say("\nPress Ctrl-C to stop.")
        demo.watch(running, _say)
        code = 1  # a service ended by itself
    except KeyboardInterrupt:  # from here on, Ctrl-C at any moment stops everything
        code = 0
    _say("stopping …")
    demo.down(Path(args.dir), _say)
    return code


def _instructions(running: demo.Running, args: argparse.Namespace) -> None:
    _say(f"\nThe patient service is running (data and logs in {running.layout.root}).")
    _say("Evidence is simulation (software-signed): it proves nothing against this host's "
         "administrator.")
    _say("Try the seed's requests:\n")
    for line in demo.requests_to_try(running):
        _say(f"  {line}")
    if args.detach:
        _say(f"\nStop it with: cloister demo down --dir {args.dir}")


def _down(args: argparse.Namespace) -> int:
    demo.down(Path(args.dir), _say)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the confidential patient-records service on this machine")
    commands = parser.add_subparsers(dest="demo_command", metavar="COMMAND", required=True)
    up = commands.add_parser(
        "up", help="start CAS, LAS, Redis and the patient API (foreground unless --detach)",
        description="Start the CAS, the LAS, Redis and the patient API, each API/Redis under "
                    "cloister run, with sessions from examples/patients/policies. Data, "
                    "sessions and logs stay in --dir across down/up.")
    up.add_argument("--detach", action="store_true", help="return once everything answers")
    up.add_argument("--dir", default=DEFAULT_DIR, help=f"demo directory (default {DEFAULT_DIR})")
    up.add_argument("--app", help="the service to seal (default examples/patients)")
    up.add_argument("--cas-port", type=port, default=CAS_PORT, help=f"default {CAS_PORT}")
    up.add_argument("--redis-port", type=port, default=REDIS_PORT, help=f"default {REDIS_PORT}")
    up.add_argument("--api-port", type=port, default=API_PORT, help=f"default {API_PORT}")
    up.add_argument("--store", default="sqlite", metavar="URL",
                    help="the CAS store: sqlite (default, in --dir) or postgresql://USER@HOST/DB "
                    "(see cloister cas serve --store)")
    up.set_defaults(func=_up)
    down = commands.add_parser("down", help="stop exactly the processes demo up started")
    down.add_argument("--dir", default=DEFAULT_DIR, help=f"demo directory (default {DEFAULT_DIR})")
    down.set_defaults(func=_down)



