"""Root parser, command registration and error reporting."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence

from cloister import __version__, errors
from cloister.cli._examples import epilog_for
from cloister.cli._exit import INTERRUPTED_EXIT, epilog, exit_code_for
from cloister.cli._output import add_common_options

#: command-group modules (``cloister.cli.<name>``); each has ``register(subparsers)``
COMMAND_MODULES: tuple[str, ...] = (
    "_session", "_measure", "_las", "_cas", "_fspf", "_run", "_values", "_demo", "_transform",
    "_attest", "_platform",
    "_completion",
)

#: the module that registers each top-level command, so that one command's start-up
#: does not pay for importing every other (``cloister run`` starts the workload)
COMMAND_OWNERS: dict[str, str] = {
    "session": "_session", "measure": "_measure", "las": "_las", "cas": "_cas",
    "fspf": "_fspf", "seal": "_fspf", "run": "_run", "values": "_values", "demo": "_demo",
    "transform": "_transform", "attest": "_attest", "completion": "_completion",
    "platform": "_platform",
}


#: root options that take a value (so the value is not mistaken for the command)
_VALUED_ROOT_OPTIONS = frozenset({"-o", "--output"})


def _modules_for(argv: Sequence[str] | None) -> tuple[str, ...]:
    """Only the owner of the command in ``argv`` when it is known, else every module."""
    words = list(argv or ())
    first = next((a for i, a in enumerate(words) if not a.startswith("-")
                  and (i == 0 or words[i - 1] not in _VALUED_ROOT_OPTIONS)), None)
    owner = COMMAND_OWNERS.get(first or "")
    return (owner,) if owner is not None else COMMAND_MODULES


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (all commands when ``argv`` is None or names none)."""
    parser = argparse.ArgumentParser(
        prog="cloister",
        description="Run unmodified Python services confidentially.",
        epilog=f"{epilog_for('cloister')}\n\n{epilog()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cloister {__version__}")
    add_common_options(parser, root=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _modules_for(argv):
        module = importlib.import_module(f"cloister.cli.{name}")
        module.register(subparsers)
    for sub in _subcommands(parser):
        _finish(sub)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand parser below ``parser``, at any depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subcommands(child)


def _finish(parser: argparse.ArgumentParser) -> None:
    """What every command has, whoever registered it: -v/-o after it, an example."""
    add_common_options(parser, root=False)
    example = epilog_for(parser.prog)
    if example and not parser.epilog:
        parser.epilog = example
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
        return INTERRUPTED_EXIT
    except OSError as err:
        # the system refused something (a path, a port, a permission): say what, where
        if args.verbose:
            logging.getLogger("cloister").exception("command failed")
        where = f" ({err.filename})" if err.filename else ""
        print(f"cloister: error: {err.strerror or err}{where}", file=sys.stderr)
        return exit_code_for(errors.ConfigError(""))
    except Exception as err:  # a bug: one line; the traceback only with --verbose
        if args.verbose:
            logging.getLogger("cloister").exception("command failed")
        print(f"cloister: error: unexpected {type(err).__name__}; rerun with --verbose for "
              "details, and please report it", file=sys.stderr)
        return 1
    return result
