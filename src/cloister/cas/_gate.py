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
   (``POLLRDHUP``), so long work (key generation) stops when nobody waits;
5. after answering on a kept-alive connection the worker waits up to
   ``keepalive_linger`` seconds for the next request itself
   (:meth:`HeaderGate.linger`; at most half the workers at once): what has arrived
   by then is read without blocking, and a complete head is served by the same
   worker — no hand-off to the selector thread and back to the pool, each a
   thread wake-up and a GIL hand-over.  A part of a head goes to the gate
   (step 2) with its ``header_deadline``; nothing goes back to be watched.

The worker pool is fixed at ``workers`` threads; since slow heads never
reach it and one address holds at most ``max_connections_per_address``
connections, one client cannot fill it.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import select
import threading
import time
from collections import Counter
from typing import Any

from cheroot import wsgi

from cloister.cas._header_gate import DONE, DROP, HUP, HeaderGate, Waiting, raw_reader
from cloister.cas._http import ENV_DISCONNECTED
from cloister.cas._limits import Limits
from cloister.cas._ratelimit import client_key
from cloister.cas._tls import IdentityGateway
from cloister.cas._wire_errors import JSONErrorConnection, JSONErrorRequest

_log = logging.getLogger(__name__)


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, HUP)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


#: the ``Date`` header of the current second
_DATE: list[tuple[int, bytes]] = [(0, b"")]


def _http_date() -> bytes:
    second, text = _DATE[0]
    now = int(time.time())
    if second != now:
        text = email.utils.formatdate(now, usegmt=True).encode("ascii")
        _DATE[0] = (now, text)
    return text


class _Request(JSONErrorRequest):
    """A request whose response (head and body) leaves in one TLS write."""

    def send_headers(self) -> None:
        # cheroot formats a Date per response (email.utils, a good part of its header
        # work); once a second is enough
        if not any(key.lower() == b"date" for key, _ in self.outheaders):
            self.outheaders.append((b"Date", _http_date()))
        super().send_headers()

    def respond(self) -> None:
        wfile = self.conn.wfile
        cork = getattr(wfile, "cork", None)
        if cork is None:  # not our TLS writer (plain HTTP answer on the TLS port)
            super().respond()
            return
        cork()
        try:
            super().respond()
        finally:
            wfile.uncork()


class GatedConnection(JSONErrorConnection):
    """A connection that gives back its place in the per-address count when closed."""

    RequestHandlerClass = _Request
    cloister_key: str | None = None
    #: step 5 read part of the next head: the gate finishes it (GatedServer.put_conn)
    cloister_parked: tuple[Waiting, int] | None = None

    def communicate(self) -> bool:
        keep = bool(super().communicate())  # type: ignore[no-untyped-call]
        while keep:
            outcome: int = self.server.gate.linger(self)
            if outcome != DONE:
                return outcome != DROP
            keep = bool(super().communicate())  # type: ignore[no-untyped-call]
        return keep

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
        raw = raw_reader(conn)
        limits: Limits = conn.server.limits
        if raw is not None:
            raw.deadline = time.monotonic() + limits.body_deadline
        with contextlib.suppress(OSError, ValueError):
            env[ENV_DISCONNECTED] = functools.partial(_hung_up, conn.socket.fileno())
        return env


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
    def can_add_keepalive_connection(self) -> bool:
        """Always, while serving: step 1 already holds every connection, idle ones
        included, under ``max_connections`` (cheroot's own count locks its selector
        on every request)."""
        return bool(self.ready)

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
        raw = raw_reader(conn)
        if raw is not None and not conn.rfile.has_data() and not raw.pending:
            self.gate.put(conn)
            return
        if raw is not None:
            raw.deadline = time.monotonic() + self.limits.header_deadline
        self.to_workers(conn)

    def to_workers(self, conn: Any) -> None:
        super().process_conn(conn)

    def put_conn(self, conn: Any) -> None:
        """A worker is done with a kept-alive ``conn``: to the gate if step 5 read part
        of its next head, else back to be watched."""
        parked, conn.cloister_parked = conn.cloister_parked, None
        if parked is not None and self.ready:
            self.gate.park(*parked)
            return
        super().put_conn(conn)


__all__ = ["GatedServer"]
