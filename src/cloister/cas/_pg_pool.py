"""A small pool of PostgreSQL connections that reconnects on demand.

Why not a pool with background reconnection: after an outage such a pool
waits out an exponential backoff before it tries again, so a replica stays
unavailable for seconds after the database is back.  Here a request that finds
no idle connection opens one itself, so the first request after PostgreSQL
returns succeeds.

Invariants: at most ``max_size`` connections exist; a connection that failed
(``broken``) or is inside a transaction is never handed out again; when one
connection is found lost, every idle one is dropped too (they share its fate
when the server restarted).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq


class PoolExhausted(Exception):
    """No connection became free within the wait limit."""


class ConnectionPool:
    """``with pool.connection() as conn:`` — a connection of its own for the block."""

    def __init__(self, conninfo: str, *, max_size: int, wait: float, **kwargs: Any) -> None:
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._wait = wait
        self._slots = threading.BoundedSemaphore(max_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return psycopg.connect(self._conninfo, **self._kwargs)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        healthy = not conn.broken and conn.info.transaction_status == pq.TransactionStatus.IDLE
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def drop_idle(self) -> None:
        """Close every idle connection (after one was found lost)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=self._wait):
            raise PoolExhausted(f"no database connection became free within {self._wait} s")
        try:
            conn = self._take()
            try:
                yield conn
            finally:
                self._give_back(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.drop_idle()
