"""The demo's background processes: started detached, recorded, stopped exactly.

Invariant: ``down`` only ever signals a process that ``up`` started.  Each
started process is recorded in ``DIR/pids/NAME.json`` with its PID *and* its
kernel start time (field 22 of ``/proc/PID/stat``); a PID whose start time
differs is another process that reused the number and is left alone.  The
start time survives ``exec`` (``cloister run -- redis-server`` becomes
``redis-server`` in the same process), which a command-line check would not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: how long a process gets to exit after SIGTERM before SIGKILL
STOP_GRACE_SECONDS = 15.0


def start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait is missing
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Record:
    name: str
    pid: int
    started: int
    log: str

    def alive(self) -> bool:
        """True while the very process that was started runs (not a reused PID)."""
        return start_time(self.pid) == self.started


class ProcessTable:
    """The processes of one demo directory (``DIR/pids``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory / "pids"
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path,
        user: tuple[int, int] | None = None,
    ) -> Record:
        """Start ``argv`` in its own session (Ctrl-C reaches only the demo), output to ``log``,
        as ``user`` (uid, gid; no supplementary groups) when it is not this process's."""
        as_other = user is not None and user != (os.getuid(), os.getgid())
        uid, gid = user if user is not None and as_other else (None, None)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=fd,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                user=uid, group=gid, extra_groups=[] if as_other else None,
            )
        finally:
            os.close(fd)
        started = start_time(proc.pid)
        record = Record(name, proc.pid, started if started is not None else -1, str(log))
        self._children[proc.pid] = proc
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(record.__dict__) + "\n")
        return record

    def records(self) -> list[Record]:
        found = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                data = json.loads(path.read_text())
                found.append(Record(str(data["name"]), int(data["pid"]), int(data["started"]),
                                    str(data["log"])))
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)  # unreadable: nothing we could safely signal
        return found

    def running(self, name: str) -> Record | None:
        for record in self.records():
            if record.name == name and record.alive():
                return record
        return None

    def exited(self, record: Record) -> bool:
        """True once ``record``'s process has ended (reaping it if it is our child)."""
        child = self._children.get(record.pid)
        if child is not None and child.poll() is not None:
            return True
        return not record.alive()

    def stop(self, record: Record) -> bool:
        """SIGTERM, then SIGKILL after the grace period; True if the process was running."""
        path = self.dir / f"{record.name}.json"
        if not record.alive():
            self._reap(record.pid)
            path.unlink(missing_ok=True)
            return False
        self._signal(record, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while not self.exited(record) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.exited(record):
            self._signal(record, signal.SIGKILL)
            while not self.exited(record):
                time.sleep(0.05)
        self._reap(record.pid)
        path.unlink(missing_ok=True)
        return True

    def stop_all(self, order: Sequence[str]) -> list[str]:
        """Stop every recorded process, those named in ``order`` first in that order."""
        records = self.records()
        rank = {name: i for i, name in enumerate(order)}
        records.sort(key=lambda r: rank.get(r.name, len(order)))
        return [r.name for r in records if self.stop(r)]

    def _signal(self, record: Record, signum: int) -> None:
        if record.alive():  # checked right before signalling: never a reused PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signum)

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            child.wait()
