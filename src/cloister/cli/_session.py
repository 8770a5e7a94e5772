"""``cloister session check`` (local) and the session commands that talk to a CAS."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cloister import errors, policy
from cloister.cli._cas_client import add_cas_options, client_from_args
from cloister.cli._output import emit
from cloister.cli._types import session_name


def add_template_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        dest="variables",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="value of a $VAR in the session template (repeatable; wins over --use-env); "
        "-e means a template value in every cloister command",
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
    summary = list(policy.summarize(session))
    for line in (*session.unserved, *session.notes):
        print(f"warning: {args.file}: {line}", file=sys.stderr)
    emit(args, {"file": args.file, "name": session.name, "valid": True, "summary": summary},
         [*summary, f"{args.file}: valid"])
    return 0


def _session_text(
    args: argparse.Namespace, *, predecessor: str | None = None
) -> tuple[str, policy.Session]:
    """The file's text with template values, ``--name`` and ``predecessor`` applied, validated."""
    raw = read_session_file(args.file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        load_file(args)  # raises the positioned error for the bad byte
        raise
    from cloister.client import prepare_session_text  # noqa: PLC0415 — keep CLI start fast

    try:
        return prepare_session_text(
            text, variables=template_variables(args), name=args.name, predecessor=predecessor
        )
    except errors.PolicyError as err:
        raise type(err)(f"{args.file}: {err.message}", details=err.details) from None


def _create(args: argparse.Namespace) -> int:
    text, _ = _session_text(args)
    ref = client_from_args(args).create_session(text)
    emit(args, {"name": ref.name, "hash": ref.hash}, ref.hash)
    return 0


def _update(args: argparse.Namespace) -> int:
    _, session = _session_text(args)  # checked locally before anything is sent
    cas = client_from_args(args)
    text, _ = _session_text(args, predecessor=cas.current_hash(session.name))
    ref = cas.create_session(text)
    emit(args, {"name": ref.name, "hash": ref.hash}, ref.hash)
    return 0


def _read(args: argparse.Namespace) -> int:
    version = client_from_args(args).read_session(args.name, args.hash)
    emit(args, {"name": version.name, "hash": version.hash, "predecessor": version.predecessor,
                "session": version.text}, version.text)
    return 0


def _list(args: argparse.Namespace) -> int:
    names = client_from_args(args).sessions()
    emit(args, {"sessions": names}, names)
    return 0


def _add_remote_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    create = commands.add_parser(
        "create", help="create a session on the CAS; prints its hash",
        description="Fill in the template values, check the session locally, send it to the "
        "CAS (with this client's identity) and print the new session hash.",
    )
    update = commands.add_parser(
        "update", help="update a session on the CAS (predecessor filled in); prints its hash",
        description="Like create, but first reads the session's current hash from the CAS and "
        "sets 'predecessor' to it; a concurrent update makes this fail with a conflict.",
    )
    for parser, func in ((create, _create), (update, _update)):
        parser.add_argument("file", metavar="FILE", help="session YAML (template)")
        add_template_options(parser)
        parser.add_argument("--name", default=None, help="session name (overrides 'name:')")
        add_cas_options(parser)
        parser.set_defaults(func=func)
    read = commands.add_parser("read", help="print a session's text as stored on the CAS")
    read.add_argument("name", metavar="NAME", type=session_name, help="session name")
    read.add_argument("--hash", default=None, metavar="H", help="an older version by its hash")
    add_cas_options(read)
    read.set_defaults(func=_read)
    listing = commands.add_parser(
        "list", help="list the sessions this identity may read",
        description="Print the names of the sessions on the CAS whose read access admits this "
        "client's identity, one per line (-o json: {\"sessions\": [...]}).",
    )
    add_cas_options(listing)
    listing.set_defaults(func=_list)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    session = subparsers.add_parser("session", help="check and manage session policies")
    commands = session.add_subparsers(dest="session_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check", help="validate a session file and summarize it (no CAS needed)"
    )
    check.add_argument("file", metavar="FILE", help="session YAML (template)")
    add_template_options(check)
    check.set_defaults(func=_check)
    _add_remote_commands(commands)
