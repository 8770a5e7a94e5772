"""In-process HTTPS: self-signed client certs become identities, no cert means anonymous."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from cloister._pki import key_hash
from cloister.cas import (
    Auth,
    CASServer,
    Request,
    Response,
    Route,
    SealOptions,
    ServerConfig,
    init_state,
)
from cloister.cas._engine_secrets import SecretsEngine


def _whoami(ctx: object, req: Request) -> Response:
    caller = req.caller
    return Response.json(200, {"caller": caller.key_hash if caller else None})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CASServer]:
    init_state(tmp_path / "state", SealOptions("file", key_file=tmp_path / "master.key"))
    config = ServerConfig(
        state=tmp_path / "state", listen=("127.0.0.1", 0),
        extra_routes=(Route("GET", "/test/whoami", _whoami, Auth.PUBLIC),),
    )
    srv = CASServer(config, SecretsEngine())
    srv.start()
    yield srv
    srv.stop()


def _get(srv: CASServer, path: str, cert: tuple[Path, Path] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    ctx = ssl.create_default_context(cafile=str(srv.identity.ca_cert_path))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("localhost", srv.address[1], context=ctx, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_self_signed_client_identity_matches_openssl(server: CASServer, tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=me"], check=True, capture_output=True)
    expected = subprocess.run(
        f"openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
        shell=True, check=True, capture_output=True, text=True).stdout.split()[0]
    assert _get(server, "/test/whoami", (cert, key)) == (200, {"caller": expected})
    assert _get(server, "/test/whoami") == (200, {"caller": None})
    status, body = _get(server, "/v1/sessions/x")
    assert status == 401 and body["error"]["code"] == "unauthenticated"


def test_forged_identity_header_is_ignored(server: CASServer) -> None:
    ctx = ssl.create_default_context(cafile=str(server.identity.ca_cert_path))
    conn = http.client.HTTPSConnection("localhost", server.address[1], context=ctx, timeout=30)
    conn.request("GET", "/test/whoami", headers={"cloister.caller_key_hash": "a" * 64})
    assert json.loads(conn.getresponse().read()) == {"caller": None}
    conn.close()


def _identity(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
        check=True, capture_output=True)
    return cert, key


def _hash_of(cert: Path) -> str:
    return key_hash(x509.load_pem_x509_certificate(cert.read_bytes()))


def _connect(srv: CASServer, cert: tuple[Path, Path] | None) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(srv.identity.ca_cert_path))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return http.client.HTTPSConnection("localhost", srv.address[1], context=ctx, timeout=30)


def _whoami_on(conn: http.client.HTTPSConnection) -> str | None:
    conn.request("GET", "/test/whoami")
    resp = conn.getresponse()
    assert resp.status == 200
    caller: str | None = json.loads(resp.read())["caller"]
    return caller


def test_identity_is_per_connection_and_follows_each_new_certificate(
    server: CASServer, tmp_path: Path
) -> None:
    a, b = _identity(tmp_path, "a"), _identity(tmp_path, "b")
    conns = {"a": _connect(server, a), "b": _connect(server, b), None: _connect(server, None)}
    expected = {"a": _hash_of(a[0]), "b": _hash_of(b[0]), None: None}
    try:
        # interleaved kept-alive requests: each connection is always its own certificate
        for _ in range(3):
            for who, conn in conns.items():
                assert _whoami_on(conn) == expected[who], f"connection of {who} misidentified"
    finally:
        for conn in conns.values():
            conn.close()
    # the same client (address, port reuse aside) on a new connection with another
    # certificate, or none, is that certificate, not the one it had before
    for who in ("b", None, "a"):
        conn = _connect(server, {"a": a, "b": b, None: None}[who])
        try:
            assert _whoami_on(conn) == expected[who]
            assert _whoami_on(conn) == expected[who]
        finally:
            conn.close()


def test_renegotiation_is_refused(server: CASServer, tmp_path: Path) -> None:
    """The identity is kept per connection because its peer certificate cannot change:
    a TLS 1.2 client asking to renegotiate (with another certificate, say) is refused."""
    cert, key = _identity(tmp_path, "a")
    done = subprocess.run(
        f"(sleep 1; printf 'R\\n'; sleep 2) | openssl s_client -tls1_2 -connect "
        f"127.0.0.1:{server.address[1]} -cert {cert} -key {key}",
        shell=True, capture_output=True, text=True, timeout=30)
    assert "Cipher is" in done.stdout, done.stdout + done.stderr  # the handshake was fine
    assert "no renegotiation" in done.stderr, done.stderr


def _records(data: bytes) -> tuple[int, bytes]:
    """Complete TLS records at the start of ``data``: their count, and what is left."""
    count = 0
    while len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
        data = data[5 + int.from_bytes(data[3:5], "big"):]
        count += 1
    return count, data


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return len(body) >= length


def test_response_head_and_body_leave_in_one_tls_record(server: CASServer) -> None:
    ctx = ssl.create_default_context(cafile=str(server.identity.ca_cert_path))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # no post-handshake tickets to count
    raw = socket.create_connection(("127.0.0.1", server.address[1]), timeout=30)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        raw.sendall(outgoing.read())
        for _ in range(2):
            tls.write(b"GET /test/whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
            raw.sendall(outgoing.read())
            answer, records, left = b"", 0, b""
            while not _complete(answer):
                chunk = raw.recv(65536)
                assert chunk, "the CAS closed the connection"
                incoming.write(chunk)
                count, left = _records(left + chunk)
                records += count
                with contextlib.suppress(ssl.SSLWantReadError):
                    answer += tls.read(65536)
            assert answer.startswith(b"HTTP/1.1 200") and b'"caller"' in answer
            assert records == 1, f"the response came in {records} TLS records"
    finally:
        raw.close()
