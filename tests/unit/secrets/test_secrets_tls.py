"""Generated certificates proven by real TLS handshakes (stdlib ssl, 127.0.0.1, free ports).

Keys reach OpenSSL through memfd files (``/proc/self/fd/N``), never through a
file on disk.
"""

from __future__ import annotations

import ssl

import pytest
from secrets_kit import ca, cert, connect, key, memfile, tls_server

from cloister.policy import Secret
from cloister.secrets import SecretValue, generate, render_text


def load_identity(ctx: ssl.SSLContext, values: dict[str, SecretValue], name: str) -> None:
    """Load ``name``'s certificate + ``:chain`` and its key, as an injected-file user would."""
    crt = render_text(f"$$SCONE::{name}:crt$$$$SCONE::{name}:chain$$", values)
    pem_key = render_text(f"$$SCONE::{name}:privatekey$$", values)
    with memfile(crt) as certfile, memfile(pem_key) as keyfile:
        ctx.load_cert_chain(certfile, keyfile)


def server_ctx(
    values: dict[str, SecretValue], name: str, client_ca: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_identity(ctx, values, name)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=render_text(f"$$SCONE::{client_ca}.chain$$", values))
    return ctx


def client_ctx(
    values: dict[str, SecretValue], trust: str, identity: str | None = None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    ctx.load_verify_locations(cadata=render_text(f"$$SCONE::{trust}:crt$$", values))
    if identity is not None:
        load_identity(ctx, values, identity)
    return ctx


def pki(key_type: str = "P-256") -> list[Secret]:
    return [
        key("ca_key", key_type), ca("ca", "ca_key"),
        key("other_ca_key"), ca("other_ca", "other_ca_key"),
        key("api_key", key_type), cert("api", "api_key", "ca", dns=("api",), endpoint="server"),
        key("client_key", key_type), cert("client", "client_key", "ca", endpoint="client"),
        cert("stranger", "client_key", "other_ca", endpoint="client"),
        cert("server_only", "client_key", "ca", dns=("api",), endpoint="server"),
        ca("inter", "ca_key", "ca"),
        cert("deep", "api_key", "inter", dns=("api",), endpoint="server"),
    ]


@pytest.fixture(scope="module", params=["P-256", "P-384", "Ed25519", "RSA-2048", "RSA-3072"])
def values(request: pytest.FixtureRequest) -> dict[str, SecretValue]:
    return generate(pki(request.param))


def test_server_certificate_accepted_by_client_trusting_only_its_ca(
    values: dict[str, SecretValue],
) -> None:
    with tls_server(server_ctx(values, "api")) as (port, outcome):
        assert connect(port, client_ctx(values, trust="ca"), "api") == b"ok"
    assert outcome.error is None


def test_server_certificate_rejected_for_another_hostname(values: dict[str, SecretValue]) -> None:
    with tls_server(server_ctx(values, "api")) as (port, _), pytest.raises(
        ssl.SSLCertVerificationError, match="Hostname mismatch"
    ):
        connect(port, client_ctx(values, trust="ca"), "redis")


def test_server_certificate_rejected_by_client_trusting_another_ca(
    values: dict[str, SecretValue],
) -> None:
    with tls_server(server_ctx(values, "api")) as (port, _), pytest.raises(
        ssl.SSLCertVerificationError, match="self-signed certificate in certificate chain"
    ):
        connect(port, client_ctx(values, trust="other_ca"), "api")


def test_server_with_intermediate_ca_sends_its_chain(values: dict[str, SecretValue]) -> None:
    with tls_server(server_ctx(values, "deep")) as (port, outcome):
        assert connect(port, client_ctx(values, trust="ca"), "api") == b"ok"
    assert outcome.error is None


def test_client_certificate_accepted_by_server_requiring_its_ca(
    values: dict[str, SecretValue],
) -> None:
    with tls_server(server_ctx(values, "api", client_ca="ca")) as (port, outcome):
        assert connect(port, client_ctx(values, trust="ca", identity="client"), "api") == b"ok"
    assert outcome.error is None and outcome.peer is not None
    assert outcome.peer["subject"] == ((("commonName", "client"),),)


def test_client_certificate_of_another_ca_is_rejected(values: dict[str, SecretValue]) -> None:
    with tls_server(server_ctx(values, "api", client_ca="ca")) as (port, outcome), pytest.raises(
        (ssl.SSLError, ConnectionError)
    ):
        connect(port, client_ctx(values, trust="ca", identity="stranger"), "api")
    assert isinstance(outcome.error, ssl.SSLCertVerificationError)
    assert "self-signed certificate in certificate chain" in str(outcome.error)


def test_no_client_certificate_is_rejected(values: dict[str, SecretValue]) -> None:
    with tls_server(server_ctx(values, "api", client_ca="ca")) as (port, outcome), pytest.raises(
        (ssl.SSLError, ConnectionError)
    ):
        connect(port, client_ctx(values, trust="ca"), "api")
    assert isinstance(outcome.error, ssl.SSLError)
    assert outcome.peer is None


def test_server_only_certificate_cannot_authenticate_a_client(
    values: dict[str, SecretValue],
) -> None:
    with tls_server(server_ctx(values, "api", client_ca="ca")) as (port, outcome), pytest.raises(
        (ssl.SSLError, ConnectionError)
    ):
        connect(port, client_ctx(values, trust="ca", identity="server_only"), "api")
    assert isinstance(outcome.error, ssl.SSLCertVerificationError)
    assert "unsuitable certificate purpose" in str(outcome.error)


def test_client_only_certificate_cannot_serve(values: dict[str, SecretValue]) -> None:
    with tls_server(server_ctx(values, "client")) as (port, _), pytest.raises(
        ssl.SSLCertVerificationError, match="unsuitable certificate purpose"
    ):
        connect(port, client_ctx(values, trust="ca"), "api")
