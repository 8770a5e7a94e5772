"""Step 2 and 5 of :mod:`cloister.cas._gate`: TLS handshakes and request heads in one
thread, and a worker waiting a moment on a kept-alive connection for its next request.

:class:`HeaderGate` reads, without blocking, what a connection has sent until its
request head is complete; whatever would block waits in the gate's selector thread,
against the connection's ``header_deadline``.  A complete head goes to the worker pool
with the bytes read so far handed over in front of the rest
(:class:`cloister.cas._tls._SSLSocketIO`).
"""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

if TYPE_CHECKING:
    from cloister.cas._gate import GatedServer

HUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


def raw_reader(conn: Any) -> Any:
    """The connection's :class:`cloister.cas._tls._SSLSocketIO`, or None (plain socket)."""
    raw = getattr(getattr(conn, "rfile", None), "raw", None)
    return raw if hasattr(raw, "pending") else None


@dataclass
class Waiting:
    conn: Any
    deadline: float
    buf: bytearray
    fd: int


#: outcomes of reading a head (else: the selector events to wait for)
DONE, DROP, IDLE = -1, -2, -3


def _head_complete(buf: bytearray) -> bool:
    head = bytes(buf).lstrip(b"\r\n")
    return b"\n\r\n" in head or b"\n\n" in head


class HeaderGate:
    """Step 2: handshake and request head, for every connection, in one thread; and
    step 5 (:meth:`linger`), in the worker that has just answered."""

    def __init__(self, server: GatedServer) -> None:
        self._server = server
        self._limits = server.limits
        self._sel = selectors.DefaultSelector()
        self._inbox: list[Any] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._waiting: dict[int, Waiting] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.timed_out = 0
        #: kept-alive requests read by the worker that answered the one before (step 5)
        self.direct = 0
        self._lingering = 0
        self._linger_places = max(1, self._limits.workers // 2)
        self._linger_ms = max(1, round(self._limits.keepalive_linger * 1000))

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
        waiting = Waiting(conn, time.monotonic() + self._limits.header_deadline,
                           bytearray(), fd)
        self._settle(waiting, self._pump(waiting), self.park)

    def park(self, waiting: Waiting, events: int) -> None:
        """The gate thread waits for the rest of ``waiting``'s head (``events``)."""
        with self._lock:
            stopped = self._stopping
            if not stopped:
                self._inbox.append((waiting, events))
        if stopped:
            waiting.conn.close()
            return
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def linger(self, conn: Any) -> int:
        """Step 5, in the worker that has just answered on ``conn`` (kept alive).

        DONE: the next head is complete and handed over in front of the rest (serve
        it); DROP: the client hung up or broke TLS (close it); IDLE: nothing came in
        time, or no waiting place was free (watch it again); anything else: part of a
        head came, ``conn.cloister_parked`` holds it for the gate."""
        raw = raw_reader(conn)
        if raw is None:
            return IDLE
        if conn.rfile.has_data() or raw.pending:  # pipelined: already here
            raw.deadline = time.monotonic() + self._limits.header_deadline
            return DONE
        with self._lock:
            if self._lingering >= self._linger_places:
                return IDLE
            self._lingering += 1
        try:
            sock = conn.socket
            fd = sock.fileno()
            if not sock.pending():
                poller = select.poll()
                poller.register(fd, select.POLLIN | HUP)
                if not poller.poll(self._linger_ms):
                    return IDLE
        except (OSError, ValueError, SSL.Error):
            return DROP
        finally:
            with self._lock:
                self._lingering -= 1
        waiting = Waiting(conn, time.monotonic() + self._limits.header_deadline,
                           bytearray(), fd)
        outcome = self._pump(waiting)
        if outcome == DONE:
            raw.pending = bytes(waiting.buf)
            raw.deadline = waiting.deadline
            with self._lock:
                self.direct += 1
        elif outcome != DROP:
            conn.cloister_parked = (waiting, outcome)
        return outcome

    def stop(self) -> None:
        with self._lock:
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

    def _advance(self, waiting: Waiting) -> None:
        self._settle(waiting, self._pump(waiting), self._wait)

    def _settle(self, waiting: Waiting, outcome: int,
                later: Callable[[Waiting, int], None]) -> None:
        """A head read so far: to a worker (DONE), closed (DROP), or ``later``."""
        if outcome == DONE:
            self._hand_over(waiting)
        elif outcome == DROP:
            self._drop(waiting)
        else:
            later(waiting, outcome)

    def _pump(self, waiting: Waiting) -> int:
        """Read all the connection has (handshake included): DONE when the head is
        complete (or over the size limit: a worker answers that), DROP, or the selector
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
                return DROP  # handshake refused, reset, or TLS alert
            if not chunk:
                return DROP
            waiting.buf += chunk
            if _head_complete(waiting.buf) or len(waiting.buf) > self._limits.max_header:
                return DONE

    def _wait(self, waiting: Waiting, events: int) -> None:
        if waiting.fd in self._waiting:
            self._sel.modify(waiting.fd, events, waiting)
        else:
            self._sel.register(waiting.fd, events, waiting)
            self._waiting[waiting.fd] = waiting

    def _forget(self, waiting: Waiting) -> None:
        if self._waiting.pop(waiting.fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(waiting.fd)

    def _hand_over(self, waiting: Waiting) -> None:
        self._forget(waiting)
        raw = raw_reader(waiting.conn)
        if raw is None:  # not our TLS reader: nothing can be handed over; refuse
            waiting.conn.close()
            return
        raw.pending = bytes(waiting.buf)
        raw.deadline = waiting.deadline
        self._server.to_workers(waiting.conn)

    def _drop(self, waiting: Waiting) -> None:
        self._forget(waiting)
        with contextlib.suppress(Exception):
            waiting.conn.close()


__all__ = ["DONE", "DROP", "HUP", "IDLE", "HeaderGate", "Waiting", "raw_reader"]
