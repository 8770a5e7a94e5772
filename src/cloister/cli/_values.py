"""``cloister values SESSION [SECRET]``: the public values (``export_public``) of a session."""

from __future__ import annotations

import argparse
from typing import Any

from cloister import errors
from cloister.cli._cas_client import add_cas_options, client_from_args
from cloister.cli._output import emit
from cloister.cli._types import secret_name, session_name


def _values(args: argparse.Namespace) -> int:
    # a public route: no client certificate is sent, and none is created
    cas = client_from_args(args, use_identity=False)
    if args.secret is None:
        values = cas.public_values(args.session)
        # the API's own shape, so `| jq -r .values.NAME.value` works as with curl
        emit(args, {"values": values})
        return 0
    value = cas.public_value(args.session, args.secret).get("value")
    if not isinstance(value, str):
        raise errors.BadAnswer(
            f"CAS {cas.address} sent no value for {args.session}/{args.secret}"
        )
    emit(args, {"session": args.session, "secret": args.secret, "value": value}, value)
    return 0


def register(subparsers: Any) -> None:
    values = subparsers.add_parser(
        "values",
        help="print a session's public values (JSON), or one secret's value",
        description="Fetch the export_public secrets of SESSION from the CAS: all of them as "
        "JSON ({\"values\": {NAME: {\"value\": ...}}}), or only the value text of SECRET. "
        "Public parts only (certificates, never private keys).",
    )
    values.add_argument("session", metavar="SESSION", type=session_name, help="session name")
    values.add_argument("secret", metavar="SECRET", nargs="?", default=None, type=secret_name,
                        help="one secret")
    add_cas_options(values, identity=False)
    values.set_defaults(func=_values)
