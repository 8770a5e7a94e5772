"""``cloister cas serve`` as a real process, driven with curl exactly as a SCONE user would."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cas_harness import CAS, Identity, make_identity
from cryptography import x509

from cloister.cas import ServerConfig, open_store

SESSION = """\
name: {name}
version: "0.3"
access_policy:
  read: [{read}]
  update: [{update}]
secrets:
  - name: api_ca_key
    kind: private-key
  - name: api_ca_cert
    kind: x509-ca
    private_key: api_ca_key
    export_public: true
  - name: pw
    kind: ascii
    size: 32
  - name: blob
    kind: binary
  - name: mkey
    kind: private-key
    migrate: true
"""


def session(name: str, read: str = "CREATOR", update: str = "CREATOR", pred: str = "") -> bytes:
    text = SESSION.format(name=name, read=read, update=update)
    if pred:
        text += f"predecessor: {pred}\n"
    return text.encode()


@pytest.fixture
def cas(tmp_path: Path) -> Iterator[CAS]:
    server = CAS(tmp_path / "state", tmp_path / "cas.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def alice(tmp_path: Path) -> Identity:
    return make_identity(tmp_path / "ids", "alice")


@pytest.fixture
def bob(tmp_path: Path) -> Identity:
    return make_identity(tmp_path / "ids", "bob")


def test_create_with_curl_and_fetch_public_ca_through_jq(cas: CAS, alice: Identity) -> None:
    reply = cas.curl("/session", identity=alice, data=session("api"))
    assert reply.status == 201, reply.body
    assert reply.json()["name"] == "api"
    assert len(reply.json()["hash"]) == 64
    pem = subprocess.run(
        f"curl -sk {cas.base}/v1/values/session=api | jq -r .values.api_ca_cert.value",
        shell=True, check=True, capture_output=True, text=True,
    ).stdout
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject == cert.issuer  # the generated, self-signed session CA
    assert "PRIVATE KEY" not in pem
    # one value by name, SCONE's flat shape
    one = cas.curl("/v1/values/session=api,secret=api_ca_cert", insecure=True)
    assert one.status == 200 and one.json()["value"] == pem.rstrip("\n") + "\n"
    # a private key / ascii value is never public, even when asked by name
    for secret in ("api_ca_key", "pw", "nope"):
        denied = cas.curl(f"/v1/values/session=api,secret={secret}", insecure=True)
        assert denied.status == 403 and denied.json()["error"]["code"] == "not_public"
    # an unknown session answers as one without public secrets: existence is not told
    unknown = cas.curl("/v1/values/session=nope", insecure=True)
    assert (unknown.status, unknown.json()) == (200, {"values": {}})


def test_post_v1_sessions_and_read_back_without_generated_values(
    cas: CAS, alice: Identity
) -> None:
    created = cas.curl("/v1/sessions", identity=alice, data=session("svc"))
    assert created.status == 201
    read = cas.curl("/v1/sessions/svc", identity=alice)
    assert read.status == 200
    body = read.json()
    assert body["session"] == session("svc").decode()
    assert body["hash"] == created.json()["hash"]
    assert "PRIVATE KEY" not in read.body.decode() and "BEGIN CERTIFICATE-----\nMII" not in body[
        "session"]
    assert cas.curl("/v1/sessions", identity=alice, data=session("svc")).status == 409


def test_caller_identity_is_sha256_of_spki_as_openssl_computes_it(
    cas: CAS, alice: Identity, bob: Identity
) -> None:
    # the session admits exactly the key hash openssl computed from alice's certificate
    text = session("hashacl", read=alice.key_hash(), update=alice.key_hash())
    assert cas.curl("/session", identity=bob, data=text).status == 201
    assert cas.curl("/v1/sessions/hashacl", identity=alice).status == 200
    assert cas.curl("/v1/sessions/hashacl", identity=bob).status == 403
    audit = (cas.state / "audit.log").read_text()
    assert f'"caller": "{alice.key_hash()}"' in audit


def test_second_identity_cannot_read_or_update_creator_only(
    cas: CAS, alice: Identity, bob: Identity
) -> None:
    h = cas.curl("/session", identity=alice, data=session("private")).json()["hash"]
    assert cas.curl("/v1/sessions/private", identity=bob).status == 403
    upd = cas.curl("/session", identity=bob, data=session("private", pred=h))
    assert upd.status == 403 and upd.json()["error"]["code"] == "forbidden"
    assert cas.curl("/v1/sessions/private", identity=alice).status == 200
    assert cas.curl("/v1/sessions/private").status == 401  # no client certificate at all


def test_any_read_and_pem_entry(cas: CAS, alice: Identity, bob: Identity) -> None:
    assert cas.curl("/session", identity=alice, data=session("open", read="ANY")).status == 201
    assert cas.curl("/v1/sessions/open", identity=bob).status == 200
    pem = bob.cert.read_text().strip().replace("\n", "\n      ")
    text = session("bobpem").decode().replace(
        "update: [CREATOR]", f"update:\n    - CREATOR\n    - |\n      {pem}"
    )
    h = cas.curl("/session", identity=alice, data=text.encode()).json()["hash"]
    updated = cas.curl(
        "/session", identity=bob, data=(text + f"predecessor: {h}\n").encode()
    )
    assert updated.status == 200, updated.body


def test_none_locks_updates_for_everyone(cas: CAS, alice: Identity, bob: Identity) -> None:
    h = cas.curl("/session", identity=alice, data=session("locked", update="NONE")).json()["hash"]
    for who in (alice, bob):
        reply = cas.curl("/session", identity=who, data=session("locked", pred=h))
        assert reply.status == 403
        assert "NONE" in reply.json()["error"]["details"][0]


def test_namespace_needs_create_sessions_on_parent(
    cas: CAS, alice: Identity, bob: Identity
) -> None:
    assert cas.curl("/session", identity=alice, data=session("team")).status == 201
    assert cas.curl("/session", identity=bob, data=session("team/app")).status == 403
    assert cas.curl("/session", identity=alice, data=session("team/app")).status == 201
    assert cas.curl("/v1/sessions/team/app", identity=alice).status == 200
    assert cas.curl("/session", identity=alice, data=session("ghost/app")).status == 404


def test_20_parallel_updates_one_wins_history_linear(cas: CAS, alice: Identity) -> None:
    base = cas.curl("/session", identity=alice, data=session("race")).json()["hash"]

    def update(i: int) -> int:
        text = session("race", pred=base) + f"# attempt {i}\n".encode()
        # comments do not change the digest, so vary a real field
        text = text.replace(b"size: 32", f"size: {33 + i}".encode())
        return cas.curl("/session", identity=alice, data=text).status

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(update, range(20)))
    assert sorted(statuses) == [200] + [409] * 19
    current = cas.curl("/v1/sessions/race", identity=alice).json()
    assert current["predecessor"] == base
    first = cas.curl(f"/v1/sessions/race?hash={base}", identity=alice).json()
    assert first["predecessor"] is None
    store = open_store(ServerConfig(state=cas.state))
    try:
        history = store.history("race")
    finally:
        store.close()
    assert [r.hash for r in history] == [base, current["hash"]]


def test_update_keeps_ascii_binary_migrated_key_and_reissues_certs(
    cas: CAS, alice: Identity
) -> None:
    h1 = cas.curl("/session", identity=alice, data=session("mig")).json()["hash"]
    ca1 = cas.curl("/v1/values/session=mig,secret=api_ca_cert", insecure=True).json()["value"]
    text2 = session("mig", pred=h1).replace(b"export_public: true", b"export_public: true\n")
    h2 = cas.curl("/session", identity=alice, data=text2).json()["hash"]
    ca2 = cas.curl("/v1/values/session=mig,secret=api_ca_cert", insecure=True).json()["value"]
    assert h2 != h1 and ca2 != ca1
    store = open_store(ServerConfig(state=cas.state))
    try:
        v1, v2 = store.secrets("mig", h1), store.secrets("mig", h2)
    finally:
        store.close()
    assert v1["pw"] == v2["pw"] and v1["blob"] == v2["blob"] and v1["mkey"] == v2["mkey"]
    assert v1["api_ca_key"] != v2["api_ca_key"]  # no migrate: regenerated


def test_restart_same_identity_hashes_and_generated_values(
    tmp_path: Path, alice: Identity
) -> None:
    cas = CAS(tmp_path / "state", tmp_path / "cas.log")
    cas.start()
    hashes = {
        n: cas.curl("/session", identity=alice, data=session(n)).json()["hash"]
        for n in ("r1", "r2")
    }
    ca_before = (cas.state / "cas-ca.pem").read_bytes()
    served_before = _served_cert(cas)
    values_before = cas.curl("/v1/values/session=r1", insecure=True).body
    assert cas.stop() == 0  # SIGTERM is a clean shutdown
    store = open_store(ServerConfig(state=cas.state))
    secrets_before = {n: store.secrets(n, h) for n, h in hashes.items()}
    store.close()

    cas.start()
    try:
        assert (cas.state / "cas-ca.pem").read_bytes() == ca_before
        assert _served_cert(cas) == served_before
        for name, h in hashes.items():
            assert cas.curl(f"/v1/sessions/{name}", identity=alice).json()["hash"] == h
        assert cas.curl("/v1/values/session=r1", insecure=True).body == values_before
    finally:
        cas.stop()
    store = open_store(ServerConfig(state=cas.state))
    try:
        assert {n: store.secrets(n, h) for n, h in hashes.items()} == secrets_before
        assert store.check_integrity() == []
    finally:
        store.close()


def _served_cert(cas: CAS) -> str:
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{cas.port}", "-servername", "localhost"],
        input=b"", capture_output=True, check=False,
    ).stdout.decode()
    start = out.index("-----BEGIN CERTIFICATE-----")
    end = out.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return out[start:end]


def test_server_certificate_names_and_tls12_minimum(cas: CAS) -> None:
    cert = x509.load_pem_x509_certificate(_served_cert(cas).encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    assert {"localhost", "cas"} <= names
    old = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{cas.port}", "-tls1_1"],
        input=b"", capture_output=True, check=False,
    )
    assert old.returncode != 0
    assert b"BEGIN CERTIFICATE" not in old.stdout
