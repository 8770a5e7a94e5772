"""The CAS's HTTPS server: slow or many connections from one client cannot starve the rest.

cheroot hands every readable connection to a worker thread, which then
blocks in the TLS handshake and in reading the request head for as long as
the client trickles bytes (per-read timeouts only).  :class:`GatedServer`
puts a *gate* in front of the workers:

1. at accept, a connection counts against ``max_connections_per_address``
   (IPv6: per /64) and ``max_connections``; over either it is closed at once,
   before any TLS work;
2. the gate — non-blocking sockets, a selector in one thread — does the TLS
   handshake and reads until the request head is complete (blank line), or
   ``header_deadline`` seconds have passed since the connection was accepted
   or became readable after an idle keep-alive (then it is closed).  What a
   connection has already sent is read at once by the thread that noticed it
   (so a kept-alive request usually goes straight on); only what would block
   waits in the gate thread.  Handshakes never cost a worker;
3. only then does a worker get the connection, the bytes read so far handed
   over in front of the rest; the body must then arrive within
   ``body_deadline`` seconds in all (:class:`LimitedGateway`), whatever the
   per-read timeout;
4. the request's environ carries a check whether the client hung up
   (``POLLRDHUP``), so long work (key generation) stops when nobody waits.

The worker pool is fixed at ``workers`` threads; since slow heads never
reach it and one address holds at most ``max_connections_per_address``
connections, one client cannot fill it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from OpenSSL import SSL

from cloister.cas._http import ENV_DISCONNECTED
from cloister.cas._limits import Limits
from cloister.cas._ratelimit import client_key
from cloister.cas._tls import IdentityGateway
from cloister.cas._wire_errors import JSONErrorConnection

_log = logging.getLogger(__name__)

_HUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


def _raw_reader(conn: Any) -> Any:
    """The connection's :class:`cloister.cas._tls._SSLSocketIO`, or None (plain socket)."""
    raw = getattr(getattr(conn, "rfile", None), "raw", None)
    return raw if hasattr(raw, "pending") else None


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, _HUP)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


class GatedConnection(JSONErrorConnection):
    """A connection that gives back its place in the per-address count when closed."""

    cloister_key: str | None = None

    def close(self) -> None:
        key, self.cloister_key = self.cloister_key, None
        if key is not None:
            self.server.release_connection(key)
        super().close()


class LimitedGateway(IdentityGateway):
    """Step 3 and 4: the body deadline, and the hung-up check in the environ."""

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        env = super().get_environ()
        conn = self.req.conn
        raw = _raw_reader(conn)
        limits: Limits = conn.server.limits
        if raw is not None:
            raw.deadline = time.monotonic() + limits.body_deadline
        with contextlib.suppress(OSError, ValueError):
            env[ENV_DISCONNECTED] = functools.partial(_hung_up, conn.socket.fileno())
        return env


@dataclass
class _Waiting:
    conn: Any
    deadline: float
    buf: bytearray
    fd: int


_DONE, _DROP = -1, -2


def _head_complete(buf: bytearray) -> bool:
    head = bytes(buf).lstrip(b"\r\n")
    return b"\n\r\n" in head or b"\n\n" in head


class HeaderGate:
    """Step 2: handshake and request head, for every connection, in one thread."""

    def __init__(self, server: GatedServer) -> None:
        self._server = server
        self._limits = server.limits
        self._sel = selectors.DefaultSelector()
        self._inbox: list[Any] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._waiting: dict[int, _Waiting] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.timed_out = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="cas-gate", daemon=True)
        self._thread.start()

    def put(self, conn: Any) -> None:
        """Read what ``conn`` has already sent, in the caller's thread (a kept-alive
        connection usually has its whole next head there: straight to a worker); what
        would block goes on in the gate thread."""
        try:
            fd = conn.socket.fileno()
        except (OSError, ValueError):
            conn.close()
            return
        waiting = _Waiting(conn, time.monotonic() + self._limits.header_deadline,
                           bytearray(), fd)
        outcome = self._pump(waiting)
        if outcome == _DONE:
            self._hand_over(waiting)
        elif outcome == _DROP:
            self._drop(waiting)
        else:
            with self._lock:
                self._inbox.append((waiting, outcome))
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for waiting in list(self._waiting.values()):
            self._drop(waiting)
        with self._lock:
            inbox, self._inbox = self._inbox, []
        for waiting, _ in inbox:
            waiting.conn.close()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            nearest = min((w.deadline for w in self._waiting.values()), default=now + 1.0)
            for key, _ in self._sel.select(max(0.0, min(nearest - now, 1.0))):
                if key.data is None:
                    self._take_inbox()
                else:
                    self._advance(key.data)
            now = time.monotonic()
            for waiting in [w for w in self._waiting.values() if w.deadline <= now]:
                self.timed_out += 1
                self._drop(waiting)

    def _take_inbox(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            inbox, self._inbox = self._inbox, []
        for waiting, events in inbox:
            self._wait(waiting, events)

    def _advance(self, waiting: _Waiting) -> None:
        outcome = self._pump(waiting)
        if outcome == _DONE:
            self._hand_over(waiting)
        elif outcome == _DROP:
            self._drop(waiting)
        else:
            self._wait(waiting, outcome)

    def _pump(self, waiting: _Waiting) -> int:
        """Read all the connection has (handshake included): _DONE when the head is
        complete (or over the size limit: a worker answers that), _DROP, or the selector
        events to wait for."""
        sock = waiting.conn.socket
        while True:
            try:
                chunk = sock.recv(16384)
            except SSL.WantReadError:
                return selectors.EVENT_READ
            except SSL.WantWriteError:
                return selectors.EVENT_WRITE
            except (SSL.Error, OSError, ValueError):
                return _DROP  # handshake refused, reset, or TLS alert
            if not chunk:
                return _DROP
            waiting.buf += chunk
            if _head_complete(waiting.buf) or len(waiting.buf) > self._limits.max_header:
                return _DONE

    def _wait(self, waiting: _Waiting, events: int) -> None:
        if waiting.fd in self._waiting:
            self._sel.modify(waiting.fd, events, waiting)
        else:
            self._sel.register(waiting.fd, events, waiting)
            self._waiting[waiting.fd] = waiting

    def _forget(self, waiting: _Waiting) -> None:
        if self._waiting.pop(waiting.fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(waiting.fd)

    def _hand_over(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        raw = _raw_reader(waiting.conn)
        if raw is None:  # not our TLS reader: nothing can be handed over; refuse
            waiting.conn.close()
            return
        raw.pending = bytes(waiting.buf)
        raw.deadline = waiting.deadline
        self._server.to_workers(waiting.conn)

    def _drop(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        with contextlib.suppress(Exception):
            waiting.conn.close()


class GatedServer(wsgi.Server):
    """cheroot's WSGI server with the gate, per-address caps and deadlines (module steps)."""

    def __init__(self, bind_addr: tuple[str, int], app: Any, limits: Limits,
                 **kwargs: Any) -> None:
        super().__init__(bind_addr, app, numthreads=limits.workers, max=limits.workers,
                         timeout=limits.idle_timeout,  # type: ignore[arg-type]  # a float works
                         **kwargs)
        self.limits = limits
        self.keep_alive_conn_limit = limits.max_connections
        self.ConnectionClass = GatedConnection
        self.gateway = LimitedGateway
        self._open: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.refused = 0
        self.gate = HeaderGate(self)

    @property
    def open_connections(self) -> int:
        with self._count_lock:
            return sum(self._open.values())

    def prepare(self) -> None:
        super().prepare()
        self.gate.start()

    def stop(self) -> None:
        self.gate.stop()
        super().stop()

    def _admit(self, conn: Any) -> bool:
        """Step 1."""
        if conn.cloister_key is not None:
            return True
        key = client_key(str(getattr(conn, "remote_addr", "") or ""))
        with self._count_lock:
            total = sum(self._open.values())
            if (total >= self.limits.max_connections
                    or self._open[key] >= self.limits.max_connections_per_address):
                self.refused += 1
                admitted = False
            else:
                self._open[key] += 1
                admitted = True
        if not admitted:
            if self.refused % 1000 == 1:
                _log.warning("refusing connections from %s: over max_connections_per_address "
                             "(%d) or max_connections (%d)", key,
                             self.limits.max_connections_per_address, self.limits.max_connections)
            conn.close()
            return False
        conn.cloister_key = key
        return True

    def release_connection(self, key: str) -> None:
        with self._count_lock:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    def process_conn(self, conn: Any) -> None:
        """A new or newly readable connection: through the gate unless its next request
        is already buffered (pipelined)."""
        if not self._admit(conn):
            return
        raw = _raw_reader(conn)
        if raw is not None and not conn.rfile.has_data() and not raw.pending:
            self.gate.put(conn)
            return
        if raw is not None:
            raw.deadline = time.monotonic() + self.limits.header_deadline
        self.to_workers(conn)

    def to_workers(self, conn: Any) -> None:
        super().process_conn(conn)


__all__ = ["GatedServer"]
