"""The gate's step 5: after answering on a kept-alive connection a worker waits a moment
for the next request itself, and that costs none of the gate's protections.

An in-process CAS with 2 workers (so one waiting worker is half the pool), real TLS
clients on loopback.  Bounds are generous for a loaded 2-core machine.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister.cas import CASServer, Limits, SealOptions, ServerConfig, init_state
from cloister.cas._engine_secrets import SecretsEngine

HEADER_DEADLINE = 1.5
LINGER = 4.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CASServer]:
    init_state(tmp_path / "state", SealOptions("file", key_file=tmp_path / "master.key"))
    limits = Limits(workers=2, header_deadline=HEADER_DEADLINE, keepalive_linger=LINGER)
    srv = CASServer(ServerConfig(state=tmp_path / "state", listen=("127.0.0.1", 0),
                                 limits=limits), SecretsEngine())
    srv.start()
    yield srv
    srv.stop()


def _context(srv: CASServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(srv.identity.ca_cert_path))


def _tls(srv: CASServer) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=30)
    return _context(srv).wrap_socket(raw, server_hostname="localhost")


def _answer(sock: ssl.SSLSocket) -> bytes:
    """One whole HTTP response from ``sock`` (Content-Length framed)."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        assert chunk, f"the CAS closed the connection after {data!r}"
        data += chunk


def _healthz(srv: CASServer) -> float:
    """Seconds a fresh client waits for /healthz."""
    started = time.monotonic()
    conn = http.client.HTTPSConnection("localhost", srv.address[1], context=_context(srv),
                                       timeout=30)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
    finally:
        conn.close()
    return time.monotonic() - started


def _closed_by_server(sock: ssl.SSLSocket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):
        return True


def test_quick_kept_alive_requests_are_read_by_the_worker_that_answered(
    server: CASServer
) -> None:
    sock = _tls(server)
    try:
        for _ in range(5):
            sock.sendall(HEALTHZ)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    # the first request came through the gate; the 4 after it straight to the worker
    assert server.http.gate.direct == 4
    conn = http.client.HTTPSConnection("localhost", server.address[1],
                                       context=_context(server), timeout=30)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    conn.close()
    assert "cloister_cas_keepalive_direct 4" in metrics, metrics


def test_pipelined_requests_are_answered_in_order(server: CASServer) -> None:
    sock = _tls(server)
    try:
        sock.sendall(HEALTHZ + b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n" + HEALTHZ)
        statuses = [_answer(sock).split(b"\r\n", 1)[0] for _ in range(3)]
    finally:
        sock.close()
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK"]


def test_a_trickled_head_after_a_kept_alive_answer_holds_no_worker_and_is_cut(
    server: CASServer
) -> None:
    slow = [_tls(server) for _ in range(4)]  # twice the workers
    try:
        for sock in slow:
            sock.sendall(HEALTHZ)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # and the rest never comes
        took = _healthz(server)
        assert took < HEADER_DEADLINE, (
            f"/healthz took {took:.2f} s: the trickling connections held the workers")
        cut = [_closed_by_server(sock, HEADER_DEADLINE + 3) for sock in slow]
        assert all(cut), f"not cut at header_deadline: {cut}"
        assert server.http.gate.timed_out >= 4
    finally:
        for sock in slow:
            sock.close()


def test_idle_kept_alive_connections_leave_half_the_workers_free(server: CASServer) -> None:
    idle = [_tls(server) for _ in range(3)]
    try:
        for sock in idle:
            sock.sendall(HEALTHZ)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
        # at most one of the 2 workers waits on an idle connection (for LINGER s)
        took = _healthz(server)
        assert took < LINGER / 2, f"/healthz took {took:.2f} s behind idle connections"
    finally:
        for sock in idle:
            sock.close()


def test_a_client_hanging_up_while_a_worker_waits_is_let_go_at_once(
    server: CASServer
) -> None:
    sock = _tls(server)
    sock.sendall(HEALTHZ)
    assert _answer(sock).startswith(b"HTTP/1.1 200")
    with contextlib.suppress(OSError):
        sock.unwrap()
    sock.close()
    deadline = time.monotonic() + LINGER / 2
    while server.http.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.http.open_connections == 0, "the waiting worker did not notice the hang-up"


def test_every_answer_has_one_current_date_header(server: CASServer) -> None:
    conn = http.client.HTTPSConnection("localhost", server.address[1],
                                       context=_context(server), timeout=30)
    try:
        for path in ("/healthz", "/nope", "/healthz"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            dates = resp.headers.get_all("Date") or []
            assert len(dates) == 1, f"{path}: Date headers {dates}"
            sent = email.utils.parsedate_to_datetime(dates[0]).timestamp()
            assert abs(sent - time.time()) < 5, dates[0]
            assert dates[0].endswith(" GMT")
    finally:
        conn.close()
