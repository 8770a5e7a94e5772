"""The release cache (cloister.cas._release_cache) through the attestation endpoints.

Real simulation evidence, real SQLite stores; a second app over the same store file
plays another CAS process.  Each test shows that a change is seen by the very next
attestation, that a refusal caches nothing, or that nothing of a release reaches disk.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister.attest import generate_ephemeral_key, open_sealed, public_key_bytes_of, report_data
from cloister.attest._evidence import platform_id, spki_der
from cloister.attest.simulation import sign_simulation
from cloister.cas import AuditLog, CASApp, Limits, create_app, sealed_sqlite
from cloister.cas._attestation import _releases
from cloister.cas._engine_secrets import SecretsEngine
from cloister.cas._http import ENV_CERT_PEM, ENV_KEY_HASH
from cloister.cas._release_cache import ReleaseCache

OWNER = ("a" * 64, "OWNER-PEM")
MEASUREMENT = "ab" * 32
LAS_KEY = Ed25519PrivateKey.generate()
PLATFORM = platform_id(spki_der(LAS_KEY.public_key()))


def session_yaml(name: str, value: str, *, predecessor: str | None = None,
                 platforms: bool = True, imports: str | None = None) -> bytes:
    lines = [f"name: {name}", 'version: "0.3"']
    if predecessor:
        lines.append(f"predecessor: {predecessor}")
    lines += ["services:", "  - name: app", f"    mrenclaves: [{MEASUREMENT}]",
              "    command: prog", "    environment:", "      TOKEN: $$SCONE::token$$"]
    if imports:
        lines += ["      SHARED: $$SCONE::shared$$"]
    if platforms:
        lines += [f"    platforms: [{PLATFORM}]"]
    lines += ["secrets:", "  - name: token", "    kind: ascii", f"    value: {value}"]
    if imports:
        lines += ["  - name: shared", "    import:", f"      session: {imports}",
                  "      secret: shared"]
    lines += ["security:", "  attestation:", "    tolerate: [debug-mode]", ""]
    return "\n".join(lines).encode()


def exporter_yaml(value: str, *, predecessor: str | None = None) -> bytes:
    lines = ["name: exporter", 'version: "0.3"']
    if predecessor:
        lines.append(f"predecessor: {predecessor}")
    lines += ["secrets:", "  - name: shared", "    kind: ascii", f"    value: {value}",
              "    export:", "      - session: importer", ""]
    return "\n".join(lines).encode()


def call(app: CASApp, method: str, path: str, body: bytes = b"",
         who: tuple[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)) if body else "", "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "127.0.0.1",
    }
    if who is not None:
        environ[ENV_KEY_HASH], environ[ENV_CERT_PEM] = who
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split(maxsplit=1)[0])

    out = b"".join(app(environ, start_response))
    return seen["status"], json.loads(out)


def write(app: CASApp, text: bytes) -> str:
    status, body = call(app, "POST", "/v1/sessions", text, OWNER)
    assert status in (200, 201), body  # 201 created, 200 updated
    return str(body["hash"])


def attest(app: CASApp, config_id: str, *, key: Ed25519PrivateKey = LAS_KEY
           ) -> dict[str, Any] | None:
    """One attestation as the runtime does it: the released configuration, or None when
    it was refused (with the uniform refusal)."""
    status, body = attempt(app, config_id, key=key)
    if status != 200:
        assert status == 403 and body["error"]["message"] == "attestation refused", body
        return None
    return body


def attempt(app: CASApp, config_id: str, *, key: Ed25519PrivateKey = LAS_KEY
            ) -> tuple[int, dict[str, Any]]:
    """(200, the opened configuration) or (status, the error body)."""
    status, body = call(app, "POST", "/v1/attest/nonce", b"{}")
    assert status == 201, body
    nonce = bytes.fromhex(body["nonce"])
    ephemeral = generate_ephemeral_key()
    public = public_key_bytes_of(ephemeral)
    evidence = sign_simulation(key, measurement=MEASUREMENT, fspf_tag=None,
                               report_data_hex=report_data(nonce, public).hex(),
                               uid=os.getuid(), gid=os.getgid())
    status, body = call(app, "POST", "/v1/attest/config", json.dumps({
        "config_id": config_id, "nonce": nonce.hex(), "public_key": public.hex(),
        "evidence": base64.b64encode(evidence).decode()}).encode())
    if status != 200:
        return status, body
    config: dict[str, Any] = json.loads(open_sealed(
        ephemeral, base64.b64decode(body["sealed_config"])))
    return 200, config


def cache(app: CASApp) -> ReleaseCache:
    return _releases(app.ctx)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[CASApp, CASApp]]:
    """Two CAS apps over one store file (two CAS processes), each with its own cache."""
    made = []
    for n in (1, 2):
        store = sealed_sqlite(tmp_path / "cas.db", bytes(32))
        audit = AuditLog(tmp_path / f"audit{n}.log")
        made.append((store, audit, create_app(store, SecretsEngine(), audit,
                                              limits=Limits(release_cache_sessions=2))))
    yield made[0][2], made[1][2]
    for store, audit, _ in made:
        store.close()
        audit.close()


def test_an_update_is_seen_by_the_next_attestation_here_and_in_another_process(
    apps: tuple[CASApp, CASApp],
) -> None:
    app, other = apps
    first = write(app, session_yaml("svc", "one"))
    assert attest(app, "svc/app")["environment"]["TOKEN"] == "one"  # type: ignore[index]
    assert attest(app, "svc/app")["environment"]["TOKEN"] == "one"  # type: ignore[index]
    assert cache(app).hits == 1, "the second attestation of one version is served from memory"
    second = write(app, session_yaml("svc", "two", predecessor=first))
    assert attest(app, "svc/app")["environment"]["TOKEN"] == "two"  # type: ignore[index]
    # the other process updates the store: this process's cached release is stale
    write(other, session_yaml("svc", "three", predecessor=second))
    assert attest(app, "svc/app")["environment"]["TOKEN"] == "three"  # type: ignore[index]


def test_a_changed_export_is_seen_by_the_importers_next_attestation(
    apps: tuple[CASApp, CASApp],
) -> None:
    app, other = apps
    first = write(app, exporter_yaml("old"))
    write(app, session_yaml("importer", "t", imports="exporter"))
    assert attest(app, "importer/app")["environment"]["SHARED"] == "old"  # type: ignore[index]
    write(other, exporter_yaml("new", predecessor=first))  # the importer itself is unchanged
    assert attest(app, "importer/app")["environment"]["SHARED"] == "new"  # type: ignore[index]


def test_a_refused_attestation_caches_nothing_and_an_enrolment_counts_at_once(
    apps: tuple[CASApp, CASApp],
) -> None:
    app, other = apps
    write(app, session_yaml("svc", "one", platforms=False))
    assert attest(app, "svc/app") is None  # no platform vouches for the LAS key yet
    assert attest(app, "svc/app", key=Ed25519PrivateKey.generate()) is None
    assert len(cache(app)) == 0, "a refused attestation must leave no secrets in memory"
    status, _ = call(other, "POST", "/v1/platforms",
                     json.dumps({"platform_id": PLATFORM}).encode(), OWNER)
    assert status == 201
    assert attest(app, "svc/app")["environment"]["TOKEN"] == "one"  # type: ignore[index]
    assert len(cache(app)) == 1


def test_the_cache_is_bounded(apps: tuple[CASApp, CASApp]) -> None:
    app, _ = apps
    for name in ("s1", "s2", "s3"):
        write(app, session_yaml(name, name))
        assert attest(app, f"{name}/app") is not None
    assert len(cache(app)) == 2  # Limits(release_cache_sessions=2)
    assert attest(app, "s1/app")["environment"]["TOKEN"] == "s1"  # type: ignore[index]


def test_a_tampered_stored_text_is_refused_although_its_release_was_cached(
    apps: tuple[CASApp, CASApp], tmp_path: Path,
) -> None:
    app, _ = apps
    write(app, session_yaml("svc", "one"))
    assert attest(app, "svc/app") is not None
    db = sqlite3.connect(tmp_path / "cas.db")
    (blob,) = db.execute("SELECT sealed_text FROM session_versions").fetchone()
    forged = bytearray(blob)
    forged[-1] ^= 1  # a store writer without the data key flips a bit of the sealed text
    with db:
        db.execute("UPDATE session_versions SET sealed_text=?", (bytes(forged),))
    db.close()
    status, body = attempt(app, "svc/app")
    assert status >= 500 and "sealed_config" not in body, body
    assert body["error"]["code"] == "store_error", body


def test_nothing_of_a_cached_release_reaches_the_disk(
    apps: tuple[CASApp, CASApp], tmp_path: Path,
) -> None:
    app, _ = apps
    secret = "s3cr3t-" + os.urandom(8).hex()
    write(app, session_yaml("svc", secret))
    for _ in range(3):
        assert attest(app, "svc/app")["environment"]["TOKEN"] == secret  # type: ignore[index]
    assert cache(app).hits == 2
    leaked = [p.name for p in tmp_path.rglob("*") if p.is_file()
              and secret.encode() in p.read_bytes()]
    assert leaked == [], f"plaintext secret found on disk in {leaked}"
