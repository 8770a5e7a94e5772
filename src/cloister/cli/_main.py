"""Root parser, command registration and error reporting."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cloister import __version__, errors
from cloister.cli._exit import exit_code_for

#: command-group modules (``cloister.cli.<name>``); each has ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = (
    "_session", "_measure", "_las", "_cas", "_fspf", "_run", "_values", "_demo", "_transform",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloister",
        description="Run unmodified Python services confidentially.",
    )
    parser.add_argument("--version", action="version", version=f"cloister {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show debug logs and tracebacks"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cloister.cli.{name}")
        module.register(subparsers)
    return parser


def report(err: errors.Error) -> None:
    """Print ``err`` as one line (plus one line per detail) on stderr."""
    print(f"cloister: error: {err.message}", file=sys.stderr)
    for detail in err.details:
        print(f"  - {detail}", file=sys.stderr)


def _configure_logging(verbose: bool) -> None:
    """Log cloister's own messages to stderr; the root logger stays the program's own
    (``cloister run`` hosts the workload in this process)."""
    logger = logging.getLogger("cloister")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        result: int = args.func(args)
    except errors.Error as err:
        if args.verbose:
            logging.getLogger("cloister").exception("command failed")
        report(err)
        return exit_code_for(err)
    except KeyboardInterrupt:
        return 130
    return result
