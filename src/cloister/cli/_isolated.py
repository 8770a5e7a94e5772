"""Restart ``cloister run`` as ``python -I -m cloister.cli run …`` (see
:mod:`cloister.runtime._isolation`): the only Python command line the LAS
quotes for.  Kept apart from the runtime package so that the process that is
about to be replaced imports nothing it does not need.
"""

from __future__ import annotations

import os
import sys

from cloister import errors

TYPE_CHECKING = False  # not typing's (see cloister.errors)
if TYPE_CHECKING:
    from collections.abc import Sequence


def reexec_isolated(args: Sequence[str]) -> None:
    """Replace this process with ``python -I -m cloister.cli ARGS`` unless it is that already."""
    if sys.flags.isolated and sys.argv[:1] and sys.argv[0].endswith(
            os.path.join("cloister", "cli", "__main__.py")):
        return
    argv = [sys.executable, "-I", "-m", "cloister.cli", *args]
    # -I ignores PYTHON* variables; the LAS refuses a caller that has any, so drop them
    # (LD_PRELOAD and friends are kept: they act before Python, and the LAS refuses them)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        os.execve(sys.executable, argv, env)  # noqa: S606 - the same interpreter, isolated
    except OSError as err:
        raise errors.LaunchError(f"cannot restart {sys.executable} isolated: "
                                 f"{err.strerror}") from None
