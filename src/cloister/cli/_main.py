"""Root parser and command registration; :mod:`._guard` reports what fails."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator, Sequence

from cloister import __version__
from cloister.cli._examples import epilog_for
from cloister.cli._exit import epilog
from cloister.cli._guard import configure_logging, guarded
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return guarded(lambda: args.func(args), verbose=args.verbose)
