"""In-process HTTPS: self-signed client certs become identities, no cert means anonymous."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
