"""Bad input of every kind gets a 4xx JSON error, and the CAS keeps serving."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cas_harness import CAS, Identity, make_identity
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("badinput")


@pytest.fixture(scope="module")
def cas(workdir: Path) -> Iterator[CAS]:
    server = CAS(workdir / "state", workdir / "cas.log", ("--max-body", "65536"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def user(workdir: Path) -> Identity:
    return make_identity(workdir / "ids", "user")


def assert_json_error(reply_status: int, body: bytes, status: int | None = None) -> dict:
    assert 400 <= reply_status < 500, (reply_status, body[:300])
    if status is not None:
        assert reply_status == status, body[:300]
    doc = json.loads(body)
    err = doc["error"]
    assert set(err) == {"code", "message", "details"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in body.decode()
    return err


def still_serves(cas: CAS) -> None:
    assert cas.curl("/healthz").status == 200


def test_oversize_body_is_413_json(cas: CAS, user: Identity) -> None:
    reply = cas.curl("/session", identity=user, data=b"name: x\nversion: '0.3'\n" + b"#" * 70000)
    err = assert_json_error(reply.status, reply.body, 413)
    assert err["code"] == "payload_too_large"
    chunked = cas.curl(
        "/session", identity=user, data=b"a" * 70000, extra=("-H", "Transfer-Encoding: chunked")
    )
    assert_json_error(chunked.status, chunked.body, 413)
    still_serves(cas)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"name: [unclosed\nversion: '0.3'\n", ""),
        (b"name: ok\nversion: '0.3'\nsecrets:\n  - name: a\n    knd: ascii\n", "knd"),
        (b"name: ok\nversion: '0.3'\nacces_policy:\n  read: [ANY]\n", "acces_policy"),
        (b'{"name": 5, "secrets": "x"}', ""),
        (b"\xff\xfe\x00garbage", ""),
        (b"- just\n- a list\n", ""),
        (b"name: ok\nversion: '0.3'\npredecessor: nothex\n", "predecessor"),
        (b"   \n", ""),
    ],
)
def test_invalid_sessions_are_400(cas: CAS, user: Identity, body: bytes, needle: str) -> None:
    reply = cas.curl("/session", identity=user, data=body)
    err = assert_json_error(reply.status, reply.body, 400)
    assert needle in " ".join([err["message"], *err["details"]])
    still_serves(cas)


def test_unknown_route_method_and_bad_query(cas: CAS, user: Identity) -> None:
    assert_json_error(*_sb(cas.curl("/v2/nothing")), 404)
    assert_json_error(*_sb(cas.curl("/healthz", extra=("-X", "DELETE"))), 405)
    assert_json_error(*_sb(cas.curl("/v1/sessions/x?hash=zz", identity=user)), 400)
    assert_json_error(*_sb(cas.curl("/v1/sessions/nosuch", identity=user)), 404)
    assert_json_error(*_sb(cas.curl("/session", data=b"name: anon\nversion: '0.3'\n")), 401)
    still_serves(cas)


def _sb(reply: object) -> tuple[int, bytes]:
    return reply.status, reply.body  # type: ignore[attr-defined]


def _odd_cert(directory: Path, *, expired: bool = False, bad_sig: bool = False) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")])
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=400), now - dt.timedelta(days=35)) if expired else (
        now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end).sign(key, hashes.SHA256())
    )
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    if bad_sig:
        der[-5] ^= 0xFF  # inside the signature value
    tag = "expired" if expired else "badsig"
    cert_path, key_path = directory / f"{tag}.pem", directory / f"{tag}-key.pem"
    pem = x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return Identity(cert_path, key_path)


@pytest.mark.parametrize("kind", ["expired", "bad_sig"])
def test_bad_client_certificate_is_refused_in_handshake(
    cas: CAS, workdir: Path, kind: str
) -> None:
    ident = _odd_cert(workdir, expired=kind == "expired", bad_sig=kind == "bad_sig")
    with pytest.raises(subprocess.CalledProcessError):
        cas.curl("/v1/sessions/x", identity=ident)
    still_serves(cas)


def _client(cas: CAS, user: Identity) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(cas.state / "cas-ca.pem"))
    ctx.load_cert_chain(str(user.cert), str(user.key))
    return http.client.HTTPSConnection("localhost", cas.port, context=ctx, timeout=60)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30))
_keys = st.sampled_from(
    ["name", "secrets", "services", "kind", "access_policy", "predecessor", "import", "export",
     "images", "security", "x", "size", "migrate", "session", "secret", "read", "update"]
)
_docs = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=20,
)
_bodies = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=2000).map(str.encode),
    _docs.map(lambda d: yaml.safe_dump(d).encode()),
)


def _fuzz(cas: CAS, user: Identity, body: bytes, conn: list[http.client.HTTPSConnection]) -> None:
    for attempt in range(2):
        try:
            conn[0].request("POST", "/v1/sessions", body=body)
            response = conn[0].getresponse()
            data = response.read()
            break
        except (http.client.HTTPException, OSError):
            conn[0].close()
            conn[0] = _client(cas, user)  # server closed an idle keep-alive connection
            if attempt:
                raise
    assert response.status < 500, data[:300]
    if response.status >= 400:
        assert_json_error(response.status, data)


def _run_fuzz(cas: CAS, user: Identity, examples: int) -> None:
    conn = [_client(cas, user)]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(body=_bodies)
    def check(body: bytes) -> None:
        _fuzz(cas, user, body, conn)

    check()
    conn[0].close()
    still_serves(cas)


def test_random_bodies_get_4xx_json(cas: CAS, user: Identity) -> None:
    _run_fuzz(cas, user, 200)


@pytest.mark.slow
def test_random_bodies_get_4xx_json_1000(cas: CAS, user: Identity) -> None:
    _run_fuzz(cas, user, 1000)
