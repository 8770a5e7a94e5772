"""Sealing the ``cloister run`` process off from its neighbours.

- **Isolated interpreter.**  The LAS quotes only for ``python -I -m
  cloister.cli run`` (:mod:`cloister.attest._caller`): no ``PYTHON*``
  variables are read, no user site directory and no working directory are
  on ``sys.path``.  :func:`reexec_isolated` turns any other start of
  ``cloister run`` (the console script, ``python -m …``) into that one,
  without the ``PYTHON*`` variables (code they ran before the restart ran
  before any secret existed, and cannot follow into the isolated process).
- **Not dumpable.**  :func:`set_dumpable` ``(False)`` (``prctl(PR_SET_DUMPABLE,
  0)``) is called before the CAS is contacted: another process of the same
  user can then neither ``ptrace`` this one nor open its ``/proc/PID/mem``,
  ``environ`` or ``maps``; and no core dump is written.  A LAS of the same,
  unprivileged user cannot inspect a non-dumpable caller either: for the
  one quote the runtime becomes dumpable, then checks that no tracer
  attached meanwhile (:func:`tracer`).  A LAS running as root (the
  deployments) needs no such window.
- **Native programs** lose this on ``exec`` (the kernel makes a process
  dumpable again): what protects their memory and ``/proc/PID/environ``
  from other processes is running them under a uid of their own, which a
  policy pins with ``uid:``.

Limit: between the ``exec`` of the interpreter and the ``prctl`` (Python's
start-up) the process is dumpable; a same-user process that opened its
``/proc/PID/mem`` in that window keeps access.  Against the workload's own
user, a dedicated uid is the protection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloister import _prctl, errors


def _prctl_or_refuse(option: int, value: int) -> None:
    try:
        _prctl.prctl(option, value)
    except OSError as err:
        raise errors.LaunchError(str(err.strerror)) from None


def set_dumpable(dumpable: bool) -> None:
    _prctl_or_refuse(_prctl.PR_SET_DUMPABLE, int(dumpable))


def die_with_parent(signal_number: int) -> None:
    """Ask the kernel to send ``signal_number`` to this process when its parent dies."""
    _prctl_or_refuse(_prctl.PR_SET_PDEATHSIG, signal_number)


def tracer() -> int:
    """The pid tracing this process (0 when none)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


@contextmanager
def dumpable_for_measurement() -> Iterator[None]:
    """Dumpable inside the block (for a LAS of this user); refuses if a tracer attached."""
    set_dumpable(True)
    try:
        yield
    finally:
        set_dumpable(False)
    traced_by = tracer()
    if traced_by:
        raise errors.LaunchError(
            f"pid {traced_by} attached to this process while the LAS measured it: refusing "
            "to receive the configuration"
        )
