"""The WSGI app without TLS: routing, auth by route, limits, JSON errors, metrics."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloister import errors
from cloister.cas import (
    AuditLog,
    Auth,
    CASApp,
    Limits,
    Request,
    Response,
    Route,
    create_app,
    sealed_sqlite,
)
from cloister.cas._engine_secrets import SecretsEngine
from cloister.cas._errors_http import HTTP_STATUS, status_for
from cloister.cas._http import ENV_CERT_PEM, ENV_KEY_HASH
from cloister.cas._routes import route_table

ALICE = ("a" * 64, "ALICE-PEM")
BOB = ("b" * 64, "BOB-PEM")

SESSION = b"""name: app
version: '0.3'
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
    export_public: true
"""


def _boom(ctx: Any, req: Request) -> Response:
    raise RuntimeError("password=hunter2 leaked into an exception")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CASApp]:
    store = sealed_sqlite(tmp_path / "cas.db", bytes(32))
    audit = AuditLog(tmp_path / "audit.log")
    yield create_app(
        store, SecretsEngine(), audit, limits=Limits(max_body=4096),
        extra_routes=[Route("GET", "/v1/boom", _boom, Auth.PUBLIC)],
    )
    store.close()
    audit.close()


def call(
    app: CASApp, method: str, path: str, body: bytes = b"", who: tuple[str, str] | None = None,
    query: str = "",
) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)) if body else "", "wsgi.input": io.BytesIO(body),
    }
    if who is not None:
        environ[ENV_KEY_HASH], environ[ENV_CERT_PEM] = who
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = int(status.split(maxsplit=1)[0]), dict(headers)

    out = b"".join(app(environ, start_response))
    text = out.decode()
    parsed = json.loads(text) if seen["headers"]["Content-Type"] == "application/json" else text
    return seen["status"], parsed, seen["headers"]


def test_create_read_values_and_security_headers(app: CASApp) -> None:
    status, body, headers = call(app, "POST", "/v1/sessions", SESSION, ALICE)
    assert status == 201 and body["name"] == "app"  # type: ignore[index]
    assert headers["Cache-Control"] == "no-store"
    status, body, _ = call(app, "GET", "/v1/sessions/app", who=ALICE)
    assert status == 200 and body["session"] == SESSION.decode()  # type: ignore[index]
    assert call(app, "GET", "/v1/sessions/app", who=BOB)[0] == 403
    status, body, _ = call(app, "GET", "/v1/values/session=app")
    assert status == 200 and list(body["values"]) == ["ca"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "who", "status", "code"),
    [
        ("GET", "/nope", None, 404, "not_found"),
        ("PUT", "/v1/sessions", ALICE, 405, "method_not_allowed"),
        ("POST", "/session", None, 401, "unauthenticated"),
        ("GET", "/v1/sessions/x", None, 401, "unauthenticated"),
        ("GET", "/v1/sessions/x", ALICE, 404, "not_found"),
    ],
)
def test_error_shapes(
    app: CASApp, method: str, path: str, who: tuple[str, str] | None, status: int, code: str
) -> None:
    got, body, _ = call(app, method, path, who=who)
    assert got == status
    assert body["error"]["code"] == code  # type: ignore[index]
    assert set(body["error"]) == {"code", "message", "details"}  # type: ignore[index]


def test_body_limit_is_413_before_parsing(app: CASApp) -> None:
    status, body, headers = call(app, "POST", "/session", b"#" * 4097, ALICE)
    assert status == 413 and body["error"]["code"] == "payload_too_large"  # type: ignore[index]
    assert headers["Connection"] == "close"
    assert call(app, "POST", "/session", b"x" * 10, ALICE)[0] == 400


def test_unexpected_exception_is_generic_500_without_its_message(
    app: CASApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        status, body, _ = call(app, "GET", "/v1/boom")
    assert status == 500 and body["error"]["code"] == "internal_error"  # type: ignore[index]
    assert "hunter2" not in json.dumps(body)
    assert "hunter2" not in caplog.text and "RuntimeError" in caplog.text


def test_metrics_by_route_pattern(app: CASApp) -> None:
    call(app, "POST", "/v1/sessions", SESSION, ALICE)
    call(app, "GET", "/v1/sessions/app", who=ALICE)
    status, text, headers = call(app, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'cloister_cas_requests_total{route="/v1/sessions/{name}",method="GET",status="200"} 1' \
        in text
    assert "cloister_cas_sessions 1" in text
    assert 'cloister_cas_request_duration_seconds_bucket{route="/v1/sessions",le="+Inf"} 1' in text
    assert "cloister_cas_attestations_total" in text
    assert "/v1/sessions/app" not in text  # concrete names never become labels


def test_every_error_class_has_one_status() -> None:
    assert status_for(errors.StoreFull("x")) == 507
    assert status_for(errors.TemplateError("x")) == 400
    assert status_for(errors.Error("x")) == 500
    classes = [cls for cls, _ in HTTP_STATUS]
    for i, cls in enumerate(classes):  # most specific first: no later class shadows an earlier
        assert not any(issubclass(cls, earlier) for earlier in classes[:i]), cls


def test_route_table_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate route"):
        route_table([Route("GET", "/healthz", _boom, Auth.PUBLIC)])
    assert all(r.auth in (Auth.PUBLIC, Auth.CLIENT_CERT) for r in route_table())
