"""Seed sessions with cross-session imports, and a scan for leaked secret material."""

from __future__ import annotations

import base64
from pathlib import Path

from cas_harness import CAS, make_identity

from cloister.cas import ServerConfig, open_store
from cloister.policy import substitute_variables
from cloister.secrets import SecretValue
from support import SEED_VARIABLES, seed_text

FLASK, REDIS = SEED_VARIABLES["FLASK_SESSION"], SEED_VARIABLES["REDIS_SESSION"]


def seed(name: str) -> bytes:
    return substitute_variables(seed_text(name), SEED_VARIABLES).encode()


def _needles(value: SecretValue) -> list[bytes]:
    """Every plaintext form of a value's secret parts (never its public certificate)."""
    out: list[bytes] = []
    if value.text is not None:
        out.append(value.text.encode())
    if value.data is not None:
        out += [value.data, value.data.hex().encode(), base64.b64encode(value.data)]
    if value.key_pem is not None:
        body = [ln for ln in value.key_pem.splitlines() if ln and not ln.startswith("-----")]
        out += [ln.encode() for ln in body if len(ln) >= 16]
        out.append(base64.b64decode("".join(body)))
    return out


def test_seed_pair_import_rules_and_no_plaintext_at_rest(tmp_path: Path) -> None:
    ident = make_identity(tmp_path / "ids", "user")
    cas = CAS(tmp_path / "state", tmp_path / "cas.log")
    cas.start()
    try:
        # the importer first: a clear 4xx naming both sessions and the secret
        early = cas.curl("/session", identity=ident, data=seed("flask"))
        assert early.status == 422
        err = early.json()["error"]
        text = " ".join([err["message"], *err["details"]])
        assert FLASK in text and REDIS in text and "redis_client_key" in text
        assert "create" in err["message"]

        assert cas.curl("/session", identity=ident, data=seed("redis")).status == 201
        assert cas.curl("/session", identity=ident, data=seed("flask")).status == 201
        api_ca = cas.curl(f"/v1/values/session={FLASK}", insecure=True).json()["values"]
        assert set(api_ca) == {"api_ca_cert"}
        assert api_ca["api_ca_cert"]["value"].startswith("-----BEGIN CERTIFICATE-----")

        # a session the exporter did not name cannot import
        thief = seed("flask").replace(FLASK.encode(), b"thief-session")
        denied = cas.curl("/session", identity=ident, data=thief)
        assert denied.status == 422
        assert "does not export it to 'thief-session'" in denied.body.decode()

        for n in range(3):
            text = f"""name: plain-{n}
version: '0.3'
secrets:
  - name: a
    kind: ascii
    size: 40
  - name: b
    kind: binary
    size: 32
  - name: k
    kind: private-key
    key_type: RSA-2048
"""
            assert cas.curl("/session", identity=ident, data=text.encode()).status == 201
        for name in (REDIS, FLASK, "plain-0"):
            read = cas.curl(f"/v1/sessions/{name}", identity=ident)
            assert b"PRIVATE KEY" not in read.body
    finally:
        cas.stop()

    store = open_store(ServerConfig(state=cas.state))
    try:
        needles: list[bytes] = []
        for name in (REDIS, FLASK, "plain-0", "plain-1", "plain-2"):
            record = store.current(name)
            assert record is not None
            for blob in store.secrets(name, record.hash).values():
                needles += _needles(SecretValue.from_bytes(blob))
    finally:
        store.close()
    assert len(needles) > 30
    files = [p for p in cas.state.rglob("*") if p.is_file()] + [cas.log]
    assert any(p.name.startswith("cas.db") for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"secret material in plaintext in {path.name}"
