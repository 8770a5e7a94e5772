"""The client library (``cloister.client``) against a real CAS: errors, pins, transport."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CAS, free_port

from cloister import errors
from cloister.client import CASAddress, CASClient, connect, fetch_certificate, load_identity

SESSION = 'name: {name}\nversion: "0.3"\nsecrets:\n  - name: pw\n    kind: ascii\n'


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CAS]:
    root = tmp_path_factory.mktemp("cas")
    server = CAS(root / "state", root / "cas.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CLOISTER_CAS_ADDR", "SCONE_CAS_ADDR", "CLOISTER_CAS_CERT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOISTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _client(cas: CAS, host: str = "127.0.0.1") -> CASClient:
    return connect(f"{host}:{cas.port}", cas_cert=cas.state / "cas-ca.pem")


def test_stale_predecessor_is_a_conflict(cas: CAS, home: Path) -> None:
    client = _client(cas)
    first = client.create_session(SESSION.format(name="lib-race"))
    second = client.create_session(
        SESSION.format(name="lib-race") + f"predecessor: {first.hash}\n"
    )
    with pytest.raises(errors.Conflict) as info:
        client.create_session(SESSION.format(name="lib-race") + f"predecessor: {first.hash}\n")
    assert type(info.value) is errors.Conflict  # the server's own class, not a client one
    assert info.value.message.startswith(f"CAS 127.0.0.1:{cas.port}: ")
    with pytest.raises(errors.Conflict):  # a second create of the same name
        client.create_session(SESSION.format(name="lib-race"))
    version = client.read_session("lib-race")
    assert (version.hash, version.predecessor) == (second.hash, first.hash)
    assert client.read_session("lib-race", first.hash).text == SESSION.format(name="lib-race")


def test_any_address_of_the_pinned_cas_works(cas: CAS, home: Path) -> None:
    # no host name check: the pin identifies the CAS, whatever name reaches it
    for host in ("127.0.0.1", "localhost"):
        _client(cas, host).healthz()


def test_errors_carry_server_details_and_no_input(cas: CAS, home: Path) -> None:
    client = _client(cas)
    secret_marker = "s3cr3t-value-that-must-not-echo"
    bad = (
        'name: lib-bad\nversion: "0.3"\nsecrets:\n  - name: x\n    kind: nope\n'
        f"    value: {secret_marker}\n"
    )
    with pytest.raises(errors.PolicyError) as info:
        client.create_session(bad)
    assert not isinstance(info.value, errors.TransportError)
    assert secret_marker not in " ".join(info.value.lines())
    with pytest.raises(errors.NotFound):
        client.read_session("lib-none")
    client.create_session(SESSION.format(name="lib-np"))
    with pytest.raises(errors.NotPublic) as not_public:
        client.public_value("lib-np", "pw")
    assert not_public.value.details  # the CAS's explanation


def test_unverified_fetch_matches_the_state_file(cas: CAS, home: Path) -> None:
    fetched = fetch_certificate(CASAddress("127.0.0.1", cas.port))
    assert fetched.pem == (cas.state / "cas-ca.pem").read_text()


def test_connection_refused_is_one_clear_error(cas: CAS, home: Path) -> None:
    port = free_port()  # nothing listens there
    client = CASClient(CASAddress("127.0.0.1", port), None, timeout=5)
    with pytest.raises(errors.Unreachable) as info:
        client.healthz()
    assert info.value.message == f"the CAS at 127.0.0.1:{port} refused the connection"
    assert "CLOISTER_CAS_ADDR" in info.value.details[0]


def test_silent_server_times_out(home: Path) -> None:
    with socket.socket() as listener:  # accepts TCP (backlog) but never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = CASClient(CASAddress("127.0.0.1", port), None, timeout=0.5)
        with pytest.raises(errors.Timeout) as info:
            client.healthz()
    assert info.value.message == f"the CAS at 127.0.0.1:{port} did not answer within 0.5 seconds"


def test_not_a_tls_server(home: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = CASClient(CASAddress("127.0.0.1", port), None, timeout=5)

        def answer_plain_http() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer_plain_http)
        thread.start()
        with pytest.raises(errors.TLSError) as info:
            client.healthz()
        thread.join()
    assert info.value.message.startswith(f"TLS with the CAS at 127.0.0.1:{port} failed")


def test_identity_is_presented_as_client_certificate(cas: CAS, home: Path) -> None:
    client = _client(cas)
    client.create_session(SESSION.format(name="lib-creator"))
    assert client.identity is not None
    me = load_identity()
    assert client.identity.key_hash == me.key_hash
    # the CAS recorded exactly this certificate as creator
    body = client.request_json("GET", "/v1/sessions/lib-creator")
    assert body["creator"].strip() == me.cert_pem.strip()
