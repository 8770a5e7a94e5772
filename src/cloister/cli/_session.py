"""``cloister session check`` (local) and the session commands that talk to a CAS."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cloister import errors, policy


def add_template_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        dest="variables",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="value of a $VAR in the session template (repeatable; wins over --use-env)",
    )
    parser.add_argument(
        "--use-env", action="store_true", help="take $VAR values from the environment"
    )


def template_variables(args: argparse.Namespace) -> dict[str, str]:
    values: dict[str, str] = dict(os.environ) if args.use_env else {}
    for item in args.variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise errors.ConfigError(f"-e {item!r}: write -e NAME=VALUE")
        values[name] = value
    return values


def read_session_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise errors.ConfigError(f"cannot read session file {path}: {err.strerror}") from None


def load_file(args: argparse.Namespace) -> policy.Session:
    """Load ``args.file`` with template values from ``-e``/``--use-env``."""
    raw = read_session_file(args.file)
    try:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return policy.load_session(raw)  # reports the offset of the bad byte
        return policy.load_session(text, variables=template_variables(args))
    except errors.PolicyError as err:
        raise type(err)(f"{args.file}: {err.message}", details=err.details) from None


def _check(args: argparse.Namespace) -> int:
    session = load_file(args)
    print("\n".join(policy.summarize(session)))
    print(f"{args.file}: valid")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    session = subparsers.add_parser("session", help="check and manage session policies")
    commands = session.add_subparsers(dest="session_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check", help="validate a session file and summarize it (no CAS needed)"
    )
    check.add_argument("file", metavar="FILE", help="session YAML (template)")
    add_template_options(check)
    check.set_defaults(func=_check)
