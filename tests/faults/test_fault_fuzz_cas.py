"""Fuzz the CAS over real HTTPS: attestation endpoints with random JSON, every route with
random methods, paths and bodies.  Invariant: a 4xx JSON error (or a success), never a
5xx, never a dropped connection, and the CAS keeps serving.

The session endpoints' bodies are fuzzed in integration/test_cas_badinput.py; here the
attestation protocol and the route table as a whole.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_harness import SESSION, json_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_harness import CAS, Identity, make_identity  # isort: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cas")


@pytest.fixture(scope="module")
def user(workdir: Path) -> Identity:
    return make_identity(workdir / "ids", "fuzzer")


@pytest.fixture(scope="module")
def cas(workdir: Path, user: Identity) -> Iterator[CAS]:
    # the fuzz is about input, not rates: the per-address nonce and attestation buckets
    # (tested on their own) would answer 429 to a fast fuzz on one address
    server = CAS(workdir / "state", workdir / "cas.log", (
        "--max-body", "65536", "--limit", "nonce_rate=100000", "--limit", "nonce_burst=100000",
        "--limit", "attest_rate=100000", "--limit", "attest_burst=100000"))
    server.start()
    # a real session with a service, so config ids can name something that exists
    body = SESSION.format(name="target").replace(
        "secrets:",
        "services:\n  - name: app\n    mrenclaves: [" + "a" * 64 + "]\n    command: python3 x\n"
        "security:\n  attestation:\n    tolerate: [debug-mode]\nsecrets:", 1)
    assert server.curl("/session", identity=user, data=body.encode()).status == 201
    yield server
    server.stop()


class Client:
    """One keep-alive HTTPS connection (with a client certificate), reopened if closed."""

    def __init__(self, cas: CAS, user: Identity) -> None:
        self.ctx = ssl.create_default_context(cafile=str(cas.state / "cas-ca.pem"))
        self.ctx.load_cert_chain(str(user.cert), str(user.key))
        self.port = cas.port
        self.conn = self._open()

    def _open(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=60)

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = self._open()
                return response.status, data
            except (http.client.HTTPException, OSError):
                # the server may close an idle keep-alive connection; retry once on a new one
                self.conn.close()
                self.conn = self._open()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def check(status: int, data: bytes, what: object) -> None:
    assert status < 500, (what, status, data[:300])
    if status >= 400:
        json_error(status, data)


# --- strategies -------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=80),
    st.sampled_from(["a" * 64, "0" * 64, "zz", "target/app", "target/", "/app", "target/app/x",
                     "x" * 5000, "AAAA", "====", "", "\u0000", "nosuch/app"]),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12,
)
_config_bodies = st.fixed_dictionaries(
    {},
    optional={
        "config_id": _json_scalars,
        "nonce": _json_scalars,
        "public_key": _json_scalars | st.binary(min_size=32, max_size=32).map(bytes.hex),
        "evidence": _json_scalars | st.binary(max_size=300).map(
            lambda b: __import__("base64").b64encode(b).decode()),
        "extra": _json,
    },
)
_attest_bodies = st.one_of(
    _config_bodies.map(lambda d: json.dumps(d).encode()),
    _json.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=500),
    st.text(max_size=300).map(str.encode),
)
_paths = st.one_of(
    st.sampled_from(["/session", "/v1/sessions", "/v1/sessions/target", "/v1/sessions/target?hash=",
                     "/v1/values/session=target", "/v1/values/session=target,secret=ca",
                     "/v1/values/session=target,secret=pw", "/healthz", "/metrics",
                     "/v1/certificate", "/v1/attest/nonce", "/v1/attest/config", "/",
                     "/v1/sessions/%00", "/v1/values/session=,secret=", "/../../etc/passwd",
                     "/v1/sessions/" + "n" * 3000, "/v1/sessions/a/b/c?hash=" + "f" * 64]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
    .map(lambda s: "/" + s),
)
_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])


def _fuzz_attest(client: Client, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(path=st.sampled_from(["/v1/attest/nonce", "/v1/attest/config"]), body=_attest_bodies,
           fresh_nonce=st.booleans())
    def run(path: str, body: bytes, fresh_nonce: bool) -> None:
        if fresh_nonce and path == "/v1/attest/config" and body.startswith(b"{"):
            # a real, unspent nonce: the request gets past the nonce check to the evidence
            status, data = client.request("POST", "/v1/attest/nonce", b"{}")
            assert status == 201, data
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                doc["nonce"] = json.loads(data)["nonce"]
                body = json.dumps(doc).encode()
        status, data = client.request("POST", path, body)
        check(status, data, (path, body[:200]))
        if path == "/v1/attest/config":
            assert status != 200, "random evidence was accepted"

    run()


def _fuzz_routes(client: Client, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(method=_methods, path=_paths, body=st.none() | _attest_bodies)
    def run(method: str, path: str, body: bytes | None) -> None:
        if method == "HEAD":
            body = None
        status, data = client.request(method, path, body)
        assert status < 500, (method, path, status, data[:300])
        if status >= 400 and method != "HEAD":
            json_error(status, data)
        assert b"PRIVATE KEY" not in data

    run()


def _still_serves(cas: CAS) -> None:
    assert cas.curl("/healthz").status == 200
    assert cas.curl("/v1/attest/nonce", data=b"{}").status == 201


def test_attest_endpoints_random_json(cas: CAS, user: Identity) -> None:
    client = Client(cas, user)
    try:
        _fuzz_attest(client, 250)
    finally:
        client.close()
    _still_serves(cas)


def test_every_route_random_requests(cas: CAS, user: Identity) -> None:
    client = Client(cas, user)
    try:
        _fuzz_routes(client, 250)
    finally:
        client.close()
    _still_serves(cas)


@pytest.mark.slow
def test_attest_endpoints_random_json_many(cas: CAS, user: Identity) -> None:
    client = Client(cas, user)
    try:
        _fuzz_attest(client, 2000)
    finally:
        client.close()
    _still_serves(cas)


@pytest.mark.slow
def test_every_route_random_requests_many(cas: CAS, user: Identity) -> None:
    client = Client(cas, user)
    try:
        _fuzz_routes(client, 2000)
    finally:
        client.close()
    _still_serves(cas)


def test_requests_cheroot_rejects_itself_get_json_errors(cas: CAS, user: Identity) -> None:
    """Found by the route fuzz: a ``#fragment`` got cheroot's text/plain 400, not JSON."""
    client = Client(cas, user)
    try:
        # "//[": urlsplit raised ValueError, which cheroot answered with a 500
        for path in ("/#0", "/healthz#x", "/v1/sessions/a#b", "//["):
            status, data = client.request("GET", path, None)
            assert status == 400
            assert json_error(status, data)["code"] == "bad_request"
    finally:
        client.close()
    _still_serves(cas)
