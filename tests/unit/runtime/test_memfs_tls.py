"""TLS files that exist only in the in-memory overlay work with ssl, Werkzeug and redis-py."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from memfs_testlib import free_port, make_pki
from werkzeug.serving import load_ssl_context

from cloister.runtime._memfs import MemFS

TLS_DIR = "/tls-cloister-memfs-test"


@pytest.fixture
def pki() -> dict[str, bytes]:
    return make_pki()


@pytest.fixture
def overlay(pki: dict[str, bytes]) -> Iterator[MemFS]:
    assert not os.path.exists(TLS_DIR)
    fs = MemFS()
    for name, data in pki.items():
        fs.add_file(f"{TLS_DIR}/{name}", data, 0o600)
    fs.install()
    try:
        yield fs
    finally:
        fs.uninstall()
    assert not os.path.exists(TLS_DIR)  # nothing ever reached the disk


def _serve_once(ctx: ssl.SSLContext, listener: socket.socket, seen: list[str]) -> None:
    conn, _ = listener.accept()
    with ctx.wrap_socket(conn, server_side=True) as tls:
        seen.append(tls.version() or "")
        tls.sendall(b"hello from memfs\n")


def test_ssl_server_loads_cert_and_key_from_memory(
    overlay: MemFS, tmp_path: Path, pki: dict[str, bytes]
) -> None:
    assert os.path.isfile(f"{TLS_DIR}/server.key")  # visible to the program...
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{TLS_DIR}/server.crt", f"{TLS_DIR}/server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []
    thread = threading.Thread(target=_serve_once, args=(ctx, listener, seen), daemon=True)
    thread.start()
    ca_file = tmp_path / "ca.crt"  # the external client's own trust anchor
    ca_file.write_bytes(pki["ca.crt"])
    client = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(ca_file),
            "-verify_return_error",
            "-ign_eof",
            "-servername",
            "localhost",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    thread.join(timeout=60)
    listener.close()
    assert "Verify return code: 0 (ok)" in client.stdout, client.stdout + client.stderr
    assert "hello from memfs" in client.stdout
    assert seen and seen[0].startswith("TLS")


def test_werkzeug_ssl_context_tuple_loads_from_memory(overlay: MemFS) -> None:
    # what Flask's app.run(ssl_context=(crt, key)) does
    ctx = load_ssl_context(f"{TLS_DIR}/server.crt", f"{TLS_DIR}/server.key")
    client = ssl.create_default_context(cadata=overlay.read_bytes(f"{TLS_DIR}/ca.crt").decode())
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []
    thread = threading.Thread(target=_serve_once, args=(ctx, listener, seen), daemon=True)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(100) == b"hello from memfs\n"
    thread.join(timeout=60)
    listener.close()


def test_load_verify_locations_cafile_from_memory(overlay: MemFS) -> None:
    ctx = ssl.create_default_context()
    before = ctx.cert_store_stats()["x509_ca"]
    ctx.load_verify_locations(cafile=f"{TLS_DIR}/ca.crt")
    assert ctx.cert_store_stats()["x509_ca"] == before + 1


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_py_client_certs_from_memory(pki: dict[str, bytes], tmp_path: Path) -> None:
    # the server's own files are on disk: only the client is under test here
    for name in ("ca.crt", "server.crt", "server.key"):
        (tmp_path / name).write_bytes(pki[name])
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(tmp_path / "server.crt"),
            "--tls-key-file",
            str(tmp_path / "server.key"),
            "--tls-ca-cert-file",
            str(tmp_path / "ca.crt"),
            "--tls-auth-clients",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    fs = MemFS()
    for name in ("ca.crt", "client.crt", "client.key"):
        fs.add_file(f"{TLS_DIR}/{name}", pki[name])
    fs.install()
    try:
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            ssl=True,
            ssl_certfile=f"{TLS_DIR}/client.crt",
            ssl_keyfile=f"{TLS_DIR}/client.key",
            ssl_ca_certs=f"{TLS_DIR}/ca.crt",
            socket_connect_timeout=5,
        )
        for _ in range(200):  # wait until the server listens (bounded)
            try:
                assert client.ping() is True
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not accept the memfs client certificate")
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        fs.uninstall()
        server.terminate()
        server.wait(timeout=30)
    assert not os.path.exists(TLS_DIR)
