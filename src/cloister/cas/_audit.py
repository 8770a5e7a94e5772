"""Append-only audit log: one JSON object per line.

Each entry: ``time`` (RFC 3339 UTC), ``caller`` (key hash or ``null`` for an
anonymous caller), ``action``, ``session``, ``decision`` (``allow``/``deny``/
``error``), ``reason``.  Callers pass only names, hashes and reasons — never
secret values; the log is opened ``O_APPEND`` (0600) and each entry is one
``write`` so concurrent entries never interleave.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

AUDIT_FILE = "audit.log"


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def record(
        self,
        *,
        caller: str | None,
        action: str,
        session: str | None,
        decision: str,
        reason: str = "",
        **extra: str | int | None,
    ) -> None:
        entry = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "caller": caller,
            "action": action,
            "session": session,
            "decision": decision,
            "reason": reason,
            **extra,
        }
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
