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
        return _run_fast(sys.argv[1:])
    from cloister.cli._main import main as run_command_line  # noqa: PLC0415

    return run_command_line(argv)


def _run_fast(args: list[str]) -> int:
    """``cloister run …``, started as the service's start-up time counts it.

    It restarts itself isolated before anything else, before the parser and
    the command modules are imported (the restart would throw them away), and
    imports nothing else (not even contextlib: 3 ms).  The isolated process
    launches ``run`` and ``run -- COMMAND…`` (how services are started)
    without building the parser; anything else is parsed as usual.
    """
    from cloister import errors  # noqa: PLC0415 - the fast path imports only these
    from cloister.cli._isolated import reexec_isolated  # noqa: PLC0415

    try:
        reexec_isolated(args)  # returns when this process is the isolated one
    except errors.Error:
        pass  # a failed restart: the full command line below reports it, as one line
    else:
        if args[1:2] in ([], ["--"]):  # `run` or `run -- COMMAND…`: no option to parse
            return _launch(args[2:])
    from cloister.cli._main import main as run_command_line  # noqa: PLC0415

    return run_command_line(None)


def _launch(command: list[str]) -> int:
    import os  # noqa: PLC0415

    from cloister.cli._guard import configure_logging, guarded  # noqa: PLC0415
    from cloister.cli._run import launch  # noqa: PLC0415

    configure_logging(False)
    return guarded(lambda: launch(command, dict(os.environ)), verbose=False)


__all__ = ["main"]
