"""A small closed-loop HTTP(S) load generator: threads, one keep-alive connection each.

Each worker cycles POST /patient/<id> (a new record), GET /patient/<id>,
GET /score/<id>, GET /patient/<id> — 25 % writes — until the time budget or
its request bound is reached.  Loopback only.  A reply other than 200/201
counts as an error (and its latency is still recorded).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

FIELDS = ("fname", "lname", "address", "city", "state", "ssn", "email", "dob", "contactphone",
          "drugallergies", "preexistingconditions", "dateadmitted", "insurancedetails")


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, verifying the certificate for ``sni`` (the policy's DNS name)."""

    def __init__(self, port: int, context: ssl.SSLContext, sni: str, timeout: float) -> None:
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self._sni = sni

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=self._sni)


@dataclass(frozen=True)
class Target:
    port: int
    context: ssl.SSLContext | None = None  # None: plain HTTP
    sni: str = "api"

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return _TLSConnection(self.port, self.context, self.sni, timeout)


@dataclass
class Result:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0


def record_body(patient_id: str) -> bytes:
    return urllib.parse.urlencode({name: f"{name}-{patient_id}" for name in FIELDS}).encode()


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def one(conn: http.client.HTTPConnection, method: str, path: str,
        body: bytes | None = None) -> int:
    conn.request(method, path, body=body, headers=_FORM if body is not None else {})
    response = conn.getresponse()
    response.read()
    return response.status


def run_load(target: Target, concurrency: int, seconds: float, max_requests: int,
             tag: str) -> Result:
    """``concurrency`` workers for ``seconds`` (or ``max_requests`` in all), closed loop."""
    result = Result()
    lock = threading.Lock()
    per_worker = max(1, max_requests // concurrency)
    start = threading.Barrier(concurrency + 1)
    deadline: list[float] = [0.0]

    def worker(w: int) -> None:
        conn = target.connection()
        latencies: list[float] = []
        errors = 0
        start.wait()
        i = 0
        while i < per_worker and time.perf_counter() < deadline[0]:
            pid = f"{tag}-{w}-{i // 4}"
            step = i % 4
            method, path, body = (("POST", f"/patient/{pid}", record_body(pid)) if step == 0
                                  else ("GET", f"/score/{pid}", None) if step == 2
                                  else ("GET", f"/patient/{pid}", None))
            t0 = time.perf_counter()
            try:
                status = one(conn, method, path, body)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = target.connection()
            latencies.append((time.perf_counter() - t0) * 1e3)
            if status not in (200, 201):
                errors += 1
            i += 1
        conn.close()
        with lock:
            result.latencies_ms.extend(latencies)
            result.errors += errors

    threads = [threading.Thread(target=worker, args=(w,), daemon=True)
               for w in range(concurrency)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for t in threads:
        t.join(seconds + 30)
    result.seconds = time.perf_counter() - began
    return result


def first_ok(target: Target, path: str, timeout: float = 60) -> float:
    """Poll ``path`` on fresh connections until a 200; returns time.perf_counter() of it."""
    deadline = time.perf_counter() + timeout
    while True:
        conn = target.connection(timeout=2)
        try:
            if one(conn, "GET", path) == 200:
                return time.perf_counter()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no 200 OK from port {target.port} within {timeout:.0f}s")
        time.sleep(0.005)
