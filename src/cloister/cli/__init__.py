"""The ``cloister`` command: a thin layer over the library.

Each command group lives in its own private module exposing
``register(subparsers)``; :func:`main` turns any :class:`cloister.errors.Error`
into one readable line on stderr and the exit code from :mod:`._exit`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: this process imports as little as it can
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloister`` command line (``sys.argv[1:]`` unless ``argv`` is given)."""
    if argv is None and sys.argv[1:2] == ["run"]:
        # `cloister run` restarts itself isolated before anything else: do it before the
        # parser and the command modules are imported, which the restart throws away
        # (the service's start-up time); the isolated process parses the same arguments.
        # This process imports nothing else (not even contextlib: 3 ms of a service's start)
        from cloister import errors  # noqa: PLC0415 - the fast path imports only these
        from cloister.cli._isolated import reexec_isolated  # noqa: PLC0415

        try:  # noqa: SIM105 - not contextlib.suppress: 3 ms of a service's start-up
            reexec_isolated(sys.argv[1:])  # returns when this process is the isolated one
        except errors.Error:
            pass  # a failed restart is reported by the full command line below, as one line
    from cloister.cli._main import main as run_command_line  # noqa: PLC0415

    return run_command_line(argv)


__all__ = ["main"]
