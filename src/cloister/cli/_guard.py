"""How every command ends: a failure is one line on stderr and an exit code from :mod:`._exit`.

Apart from the parser (:mod:`._main`), so that the isolated process of
``cloister run``, which needs no parser for ``run`` or ``run -- COMMAND…``
(:mod:`cloister.cli`), logs and reports exactly as every other command.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cloister import errors
from cloister.cli._exit import INTERRUPTED_EXIT, exit_code_for


def report(err: errors.Error) -> None:
    """Print ``err`` as one line (plus one line per detail) on stderr."""
    print(f"cloister: error: {err.message}", file=sys.stderr)
    for detail in err.details:
        print(f"  - {detail}", file=sys.stderr)


def configure_logging(verbose: bool) -> None:
    """Log cloister's own messages to stderr; the root logger stays the program's own
    (``cloister run`` hosts the workload in this process)."""
    logger = logging.getLogger("cloister")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def guarded(command: Callable[[], int], *, verbose: bool) -> int:
    """``command()``'s exit status; any failure reported as one line (a traceback only
    with ``verbose``) and turned into its exit code."""
    try:
        return command()
    except errors.Error as err:
        if verbose:
            logging.getLogger("cloister").exception("command failed")
        report(err)
        return exit_code_for(err)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
    except OSError as err:
        # the system refused something (a path, a port, a permission): say what, where
        if verbose:
            logging.getLogger("cloister").exception("command failed")
        where = f" ({err.filename})" if err.filename else ""
        print(f"cloister: error: {err.strerror or err}{where}", file=sys.stderr)
        return exit_code_for(errors.ConfigError(""))
    except Exception as err:  # a bug: one line; the traceback only with --verbose
        if verbose:
            logging.getLogger("cloister").exception("command failed")
        print(f"cloister: error: unexpected {type(err).__name__}; rerun with --verbose for "
              "details, and please report it", file=sys.stderr)
        return 1
