"""Several CAS processes on one port: ``cloister cas serve --processes N`` (``SO_REUSEPORT``).

One CAS process runs its requests under one GIL, so it uses about one core
however many threads it has.  With ``processes`` N > 1:

1. the first process (``process_index`` 0) starts as usual — unseals, opens
   and migrates the store, creates the CAS identity — and binds the port with
   ``SO_REUSEPORT``;
2. only then it starts N-1 more, each running :func:`main` with its
   :class:`cloister.cas.ServerConfig` on stdin (the port now fixed), each
   unsealing on its own (``file`` seal only: a ``shamir`` CAS is unsealed by a
   request that only one process would see, and the ``tpm`` seal's rollback
   counter is kept by one process), binding the same port; the kernel spreads
   new connections over all N;
3. each one dies with the first (``PR_SET_PDEATHSIG``); the first restarts one
   that died (at most once per :data:`RESTART_PAUSE` seconds each) and stops
   them all when it stops.

What the processes share is the store (SQLite: one file, writers queued on
its lock file; PostgreSQL: the database) and the audit log (one file, one
``write`` per entry, rotation under a lock: :class:`cloister.cas.AuditLog`
``shared``).  Each process keeps its own connection limits, worker threads and
key-generation processes, and 1/N of every per-address *rate* limit
(:func:`per_process`), so the whole CAS admits the configured rates.  Metrics
are per process: a scrape is answered by one of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from cloister import _prctl, errors
from cloister.cas._limits import Limits

if TYPE_CHECKING:
    from cloister.cas._server import ServerConfig

_log = logging.getLogger(__name__)

#: the most processes ``--processes`` accepts
MAX_PROCESSES = 64
#: seconds before a process that died is started again
RESTART_PAUSE = 5.0
_MAIN = "import sys; from cloister.cas._processes import main; sys.exit(main())"


def per_process(limits: Limits, processes: int) -> Limits:
    """``limits`` with every per-address rate and burst split over ``processes``."""
    if processes <= 1:
        return limits
    return dataclasses.replace(
        limits,
        nonce_rate=limits.nonce_rate / processes,
        nonce_burst=math.ceil(limits.nonce_burst / processes),
        attest_rate=limits.attest_rate / processes,
        attest_burst=math.ceil(limits.attest_burst / processes),
    )


def check_seal(seal_type: str, processes: int) -> None:
    """:class:`errors.ConfigError` unless ``processes`` can serve this seal (step 2)."""
    if processes > 1 and seal_type != "file":
        why = ("a shamir CAS is unsealed by a request only one process would see"
               if seal_type == "shamir" else
               "the tpm seal's rollback counter is kept by one process")
        raise errors.ConfigError(
            f"--processes {processes} needs the file seal; this CAS has the {seal_type} seal "
            f"({why})",
            details=["run one process per CAS (--processes 1), or several CAS replicas on a "
                     "PostgreSQL store"],
        )


class Siblings:
    """Steps 2 and 3, in the first process."""

    def __init__(self, config: ServerConfig, port: int) -> None:
        host = config.listen[0]
        self._configs = [dataclasses.replace(config, listen=(host, port), process_index=i)
                         for i in range(1, config.processes)]
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._started: dict[int, float] = {}
        self._stopping = False

    def start(self) -> None:
        for config in self._configs:
            self._spawn(config)

    def _spawn(self, config: ServerConfig) -> None:
        payload = pickle.dumps((os.getpid(), config))
        proc = subprocess.Popen([sys.executable, "-c", _MAIN], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(payload)
        proc.stdin.close()
        self._procs[config.process_index] = proc
        self._started[config.process_index] = time.monotonic()
        _log.info("CAS process %d of %d started (pid %d)", config.process_index + 1,
                  config.processes, proc.pid)

    def check(self) -> None:
        """Start again a process that died (step 3)."""
        if self._stopping:
            return
        for config in self._configs:
            proc = self._procs[config.process_index]
            if proc.poll() is None:
                continue
            if time.monotonic() - self._started[config.process_index] < RESTART_PAUSE:
                continue
            _log.warning("CAS process %d exited with status %s; starting it again",
                         config.process_index + 1, proc.returncode)
            self._spawn(config)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.poll() is None]

    def stop(self) -> None:
        self._stopping = True
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _die_with_parent(parent: int) -> None:
    # not Linux: the first process still stops us
    with contextlib.suppress(OSError, AttributeError):
        _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        sys.exit(0)


def main() -> int:
    """A further CAS process (step 2): its config on stdin, served until SIGTERM."""
    _prctl.seal_off_server()  # exec made this process dumpable again
    parent, config = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 — from our parent
    _die_with_parent(parent)
    from cloister.cli._guard import configure_logging  # noqa: PLC0415

    configure_logging(False)
    from cloister.cas._server import CASServer  # noqa: PLC0415

    try:
        CASServer(config).serve_forever()
    except errors.Error as exc:
        _log.error("CAS process %d: %s", config.process_index + 1, exc.message)
        return 1
    return 0

