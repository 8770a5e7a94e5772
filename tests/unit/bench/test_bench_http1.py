"""``bench._http1``: the load generator's HTTP/1.1 client against a real TLS socket that
answers with canned bytes (Content-Length, chunked, Connection: close, garbage)."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench._concurrency import make_identity
from bench._http1 import Connection, ProtocolError

ANSWERS = [
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
    b'{"a":1}',
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n"
    b"0\r\nTrailer: t\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nno",
]


class Canned:
    """A TLS server on loopback answering the requests of one connection with ``answers``
    in turn (each in two writes, so the client must read more than once); it keeps what
    it received."""

    def __init__(self, directory: Path, answers: list[bytes]) -> None:
        cert, key = make_identity(directory, "server")
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._answers = list(answers)
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with self._ctx.wrap_socket(conn, server_side=True) as tls:
            for answer in self._answers:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += tls.recv(4096)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += tls.recv(4096)
                self.received.append(head + b"\r\n\r\n" + body)
                tls.sendall(answer[:20])
                tls.sendall(answer[20:])

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=10)


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[Canned]:
    server = Canned(tmp_path, ANSWERS)
    yield server
    server.close()


def _client(port: int) -> Connection:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return Connection("127.0.0.1", port, ctx)


def test_length_chunked_and_close_answers_on_one_kept_connection(canned: Canned) -> None:
    conn = _client(canned.port)
    try:
        assert conn.post("/v1/sessions", b"name: x\n", "application/x-yaml") == (
            201, b'{"a":1}', True)
        assert conn.post("/b", b"", "application/json") == (200, b"abcdefg", True)
        assert conn.post("/c", b"{}", "application/json") == (503, b"no", False)
    finally:
        conn.close()
    assert canned.received[0] == (b"POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\n"
                                  b"Content-Type: application/x-yaml\r\n"
                                  b"Content-Length: 8\r\n\r\nname: x\n")
    assert len(canned.received) == 3


def test_garbage_and_a_hang_up_are_protocol_errors(tmp_path: Path) -> None:
    garbage = Canned(tmp_path / "g", [b"SSH-2.0-OpenSSH_9.2 not http at all\r\n\r\n"])
    conn = _client(garbage.port)
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x status line"):
        conn.post("/", b"", "text/plain")
    conn.close()
    garbage.close()
    silent = Canned(tmp_path / "s", [])  # accepts, then closes without answering
    conn = _client(silent.port)
    with pytest.raises(OSError):
        conn.post("/", b"", "text/plain")
    conn.close()
    silent.close()
