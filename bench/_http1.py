"""A lean keep-alive HTTPS/1.1 client for the load generator.

The bench's clients share the machine's two cores with the server they load:
``http.client`` spends more CPU per request on its own bookkeeping (header
objects through ``email``, buffered readers) than some servers spend on the
request, which the server then cannot have.  This client writes a request as
one buffer and reads the response with as few calls as it can: the status
line, ``Content-Length`` or ``chunked`` bodies, ``Connection: close``.  It
speaks only what the bench needs (POST, no redirects, no 1xx), and is used
for cloister's CAS and for cfssl alike.
"""

from __future__ import annotations

import socket
import ssl


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.1 this client understands (or it hung up)."""


class Connection:
    def __init__(self, host: str, port: int, context: ssl.SSLContext, *,
                 server_hostname: str = "localhost", timeout: float = 60) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = context.wrap_socket(raw, server_hostname=server_hostname)
        self._buf = b""
        self._host = server_hostname.encode("ascii")

    def close(self) -> None:
        self._sock.close()

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes, bool]:
        """(status, body, keep-alive) of ``POST path``."""
        self._sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (
                               path.encode("ascii"), self._host,
                               content_type.encode("ascii"), len(body), body))
        head = self._until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
        status = int(lines[0][9:12])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            data = self._chunked()
        else:
            data = self._exactly(int(headers.get(b"content-length", b"0")))
        keep = headers.get(b"connection") != b"close"
        return status, data, keep

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ProtocolError("the server closed the connection")
        self._buf += chunk

    def _until(self, marker: bytes) -> bytes:
        while (at := self._buf.find(marker)) < 0:
            self._fill()
        found, self._buf = self._buf[:at], self._buf[at + len(marker):]
        return found

    def _exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        found, self._buf = self._buf[:size], self._buf[size:]
        return found

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                while self._until(b"\r\n"):  # trailers, then the blank line
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._until(b"\r\n")
