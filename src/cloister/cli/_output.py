"""How commands print: results on stdout (text or ``-o json``), prose on stderr.

Every command that prints a result calls :func:`emit` with the result as
data and, for the text format, as lines; scripts read stdout (one JSON
document with ``-o json``, or the text lines), people read the notices on
stderr (:func:`notice`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: `cloister run` pays for every import on its start-up
    from typing import Any

FORMATS = ("text", "json")


def add_common_options(parser: argparse.ArgumentParser, *, root: bool) -> None:
    """``-v/--verbose`` and ``-o/--output``, on the root and again on every subcommand.

    On a subcommand they default to SUPPRESS, so ``cloister -v session list``
    and ``cloister session list -v`` mean the same.
    """
    default: object = argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=False if root else default,
                        help="show debug logs and tracebacks")
    parser.add_argument("-o", "--output", choices=FORMATS, default="text" if root else default,
                        help="result format on stdout: text (default) or json")


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "text") == "json"


def emit(args: argparse.Namespace, data: Any, text: str | Iterable[str] | None = None) -> None:
    """Print the result: ``data`` as JSON with ``-o json``, else ``text`` (lines or a string)."""
    import json  # noqa: PLC0415 — only commands that print a result need it

    if wants_json(args):
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    if text is None:
        text = json.dumps(data, indent=2, sort_keys=True)
    if isinstance(text, str):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    for line in text:
        print(line)


def notice(message: str) -> None:
    """What the user must see but scripts must not read: stderr."""
    print(f"cloister: {message}", file=sys.stderr)
