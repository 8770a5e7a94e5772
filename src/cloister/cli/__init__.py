"""The ``cloister`` command: a thin layer over the library.

Each command group lives in its own private module exposing
``register(subparsers)``; :func:`main` turns any :class:`cloister.errors.Error`
into one readable line on stderr and the exit code from :mod:`._exit`.
"""

from cloister.cli._main import main

__all__ = ["main"]
