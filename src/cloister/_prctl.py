"""``prctl(2)`` for the settings cloister's processes make about themselves (Linux)."""

from __future__ import annotations

import ctypes
import os

from cloister import errors

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


def prctl(option: int, value: int) -> None:
    """``prctl(option, value)``; OSError with the kernel's reason when it refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}) failed: {os.strerror(err)}")


def set_dumpable(dumpable: bool) -> None:
    """Whether processes of the same uid may ptrace this one or open its ``/proc/PID/mem``,
    ``environ`` and ``maps`` (and whether it leaves a core dump)."""
    prctl(PR_SET_DUMPABLE, int(dumpable))


def seal_off_server() -> None:
    """A server holding keys (the CAS, the LAS) becomes non-dumpable before it loads any:
    a process of the same uid can then neither ptrace it nor read its memory."""
    try:
        set_dumpable(False)
    except OSError as err:
        raise errors.ConfigError(f"cannot protect this process's memory: {err.strerror}",
                                 details=["cloister's servers run on Linux"]) from None
