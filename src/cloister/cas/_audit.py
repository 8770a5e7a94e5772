"""Append-only audit log: one JSON object per line, bounded in size and in what it takes.

Each entry: ``time`` (RFC 3339 UTC), ``caller`` (key hash or ``null`` for an
anonymous caller), ``action``, ``session``, ``decision`` (``allow``/``deny``/
``error``), ``reason``, and action-specific fields.  Callers pass only names,
hashes and reasons — never secret values.  The file is opened ``O_APPEND``
(0600) and each entry is one ``write``, so concurrent entries never interleave.

Bounds (the settings are in :class:`cloister.cas.Limits`):

- every string is cut to ``field_max`` characters (``reason`` to four times
  that), its full length noted, so a caller cannot make an entry large;
- anonymous refusals are written one by one up to ``anonymous_per_minute`` in
  each minute; the rest of that minute become one ``summary`` entry with their
  count per action (written when the minute ends);
- past ``max_bytes`` the file is rotated: ``audit.log`` → ``audit.log.1`` …
  → ``audit.log.N`` (``keep``), the oldest deleted — retention is the last
  ``max_bytes * (keep + 1)`` bytes of entries.  With ``shared`` (several CAS
  processes writing one log: ``cloister cas serve --processes N``) a process
  rotates under a lock file (``audit.log.lock``), only if the file is still
  over the size, and each one follows a rotation made by another before its
  next entry;
- when the disk is full, entries wait in memory (up to ``backlog``; beyond
  that they are counted, and the count is written when space returns) and are
  written, in order, once a write succeeds again.  Meanwhile
  :meth:`AuditLog.require_writable` (also when less than 64 KiB are free) and
  ``durable`` entries raise
  :class:`errors.StoreFull` (507), so nothing that must be audited happens
  unaudited: session writes and configuration releases wait for space,
  reads go on.  (The free space is read at every check while less than 64 MiB
  are free, and at most once a second above that.)
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from cloister import errors

AUDIT_FILE = "audit.log"

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_MINUTE = 60.0
#: free bytes below which writes that must be audited are refused before they start
_HEADROOM = 64 * 1024
#: free space at least this large is read again only after ``_PLENTY_S`` seconds (a
#: ``statvfs`` per request costs little, but it lets the GIL go in a busy server); below
#: it, every check reads it
_PLENTY = 64 * 1024 * 1024
_PLENTY_S = 1.0


def _stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


def _full() -> errors.StoreFull:
    return errors.StoreFull(
        "the CAS audit log is full; nothing was done",
        details=["free disk space under the CAS audit log and retry"],
    )


def cap(value: str, limit: int) -> str:
    """``value``, cut to ``limit`` characters with its full length noted."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value)} characters)"


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        keep: int = 8,
        field_max: int = 512,
        anonymous_per_minute: int = 60,
        backlog: int = 10_000,
        clock: Callable[[], float] = time.time,
        shared: bool = False,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.field_max = field_max
        self.anonymous_per_minute = anonymous_per_minute
        self.backlog_limit = backlog
        self._clock = clock
        self._lock = threading.RLock()
        self._backlog: list[bytes] = []
        self._lost = 0
        self._torn = False  # the last write was cut short: start the next one on a new line
        self._window = 0.0
        self._anonymous = 0
        self._suppressed: Counter[str] = Counter()
        self._timer: threading.Timer | None = None
        self._fd = -1
        self._size = 0
        self._inode = 0
        self._shared = shared
        self._root = os.geteuid() == 0  # root may use the blocks reserved for it
        #: until when the free space last read counts as plenty (monotonic seconds)
        self._plenty_until = 0.0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        st = os.fstat(self._fd)
        self._size, self._inode = st.st_size, st.st_ino

    def _follow(self) -> None:
        """Shared log: reopen when another process rotated ``audit.log`` away."""
        try:
            moved = os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            moved = True
        if moved:
            os.close(self._fd)
            self._fd = -1
            self._open()
        else:
            self._size = os.fstat(self._fd).st_size

    # --- entries --------------------------------------------------------------------

    def record(
        self,
        *,
        caller: str | None,
        action: str,
        session: str | None,
        decision: str,
        reason: str = "",
        durable: bool = False,
        **extra: str | int | None,
    ) -> None:
        """Write one entry.  ``durable``: raise :class:`errors.StoreFull` if it cannot be
        written now (the caller must then not do what it audits)."""
        now = self._clock()
        if caller is None and decision == "deny" and self._suppress(action, now):
            return
        entry = {
            "time": _stamp(now), "caller": caller, "action": action, "session": session,
            "decision": decision, "reason": cap(reason, 4 * self.field_max), **extra,
        }
        self._write(self._line(entry), durable=durable)

    def _line(self, entry: Mapping[str, object]) -> bytes:
        capped = {k: cap(v, self.field_max) if isinstance(v, str) and k != "reason" else v
                  for k, v in entry.items()}
        return (json.dumps(capped, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")

    def require_writable(self) -> None:
        """:class:`errors.StoreFull` unless entries can be written now: the backlog is
        flushed and the filesystem has at least ``_HEADROOM`` bytes free."""
        if not (self._backlog or self._lost) and time.monotonic() < self._plenty_until:
            return  # nothing held back and plenty of space: no lock needed to know it
        with self._lock:
            if self._backlog or self._lost:
                self._drain()
            if self._backlog or self._lost or self._free() < _HEADROOM:
                raise _full()

    def _free(self) -> int:
        """Free bytes for the log (``_PLENTY`` at most: re-read once a second while plenty)."""
        now = time.monotonic()
        if now < self._plenty_until:
            return _PLENTY
        try:
            st = os.fstatvfs(self._fd)
        except OSError:
            return 0
        blocks = st.f_bfree if self._root else st.f_bavail
        free = blocks * st.f_frsize
        self._plenty_until = now + _PLENTY_S if free >= _PLENTY else 0.0
        return free

    # --- summarising anonymous refusals ------------------------------------------------

    def _suppress(self, action: str, now: float) -> bool:
        with self._lock:
            if now - self._window >= _MINUTE:
                self._roll()
                self._window = now
            self._anonymous += 1
            if self._anonymous <= self.anonymous_per_minute:
                return False
            if not self._suppressed and self._timer is None:
                self._timer = threading.Timer(self._window + _MINUTE - now, self._on_timer)
                self._timer.daemon = True
                self._timer.start()
            self._suppressed[cap(action, 64)] += 1
            return True

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._roll()
            self._window, self._anonymous = 0.0, 0

    def _roll(self) -> None:
        """Write the summary of the minute that ended (if anything was held back)."""
        if not self._suppressed:
            self._anonymous = 0
            return
        total = sum(self._suppressed.values())
        entry = {
            "time": _stamp(self._clock()), "caller": None, "action": "summary",
            "session": None, "decision": "deny",
            "reason": f"{total} further anonymous refusals in this minute, not written one by one",
            "since": _stamp(self._window), "suppressed": total,
            "actions": ", ".join(f"{a}: {n}" for a, n in sorted(self._suppressed.items())),
        }
        self._suppressed.clear()
        self._anonymous = 0
        self._write(self._line(entry), durable=False)

    # --- the file ----------------------------------------------------------------------

    def _write(self, line: bytes, *, durable: bool) -> None:
        with self._lock:
            if self._backlog or self._lost:
                self._drain()
            if durable and self._free() < _HEADROOM:
                raise _full()
            if not self._backlog and not self._lost:
                try:
                    self._append(line)
                    return
                except OSError as exc:
                    self._plenty_until = 0.0
                    if exc.errno not in _FULL:
                        raise errors.StoreError(
                            f"the CAS audit log cannot be written: {exc.strerror}"
                        ) from None
            if durable:
                raise _full()
            if len(self._backlog) < self.backlog_limit:
                self._backlog.append(line)
            else:
                self._lost += 1

    def _drain(self) -> None:
        try:
            while self._backlog:
                self._append(self._backlog[0])
                self._backlog.pop(0)
            if self._lost:
                self._append(self._line({
                    "time": _stamp(self._clock()), "caller": None, "action": "audit",
                    "session": None, "decision": "error",
                    "reason": f"{self._lost} audit entries were lost while the disk was full",
                }))
                self._lost = 0
        except OSError:
            return

    def _append(self, line: bytes) -> None:
        if self._fd < 0:
            raise OSError(errno.EBADF, "the audit log is closed")
        if self._shared:
            self._follow()
        if self._size + len(line) > self.max_bytes and self._size > 0:
            if self._shared:
                self._rotate_shared(len(line))
            else:
                self._rotate()
        data = (b"\n" + line) if self._torn else line
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        finally:
            self._size += written
            self._torn = 0 < written < len(data)
        self._torn = False

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        oldest.unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def _rotate_shared(self, needed: int) -> None:
        """:meth:`_rotate` under the lock file, if no other process rotated meanwhile."""
        lock = os.open(self.path.with_name(self.path.name + ".lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._follow()
            if self._size > 0 and self._size + needed > self.max_bytes:
                self._rotate()
        finally:
            os.close(lock)  # closing releases the lock

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._fd >= 0:
                self._roll()
                self._drain()
                os.close(self._fd)
                self._fd = -1
