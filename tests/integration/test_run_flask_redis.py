"""End to end: redis-server and an unmodified Flask program, both launched by ``cloister run``.

Redis gets its TLS files on a memory filesystem (/dev/shm); the Flask program
opens /tls/… paths that exist only inside its process.  They authenticate each
other with certificates the CAS generated from the two sessions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER, free_port
from run_harness import platform, python_measurement

from support import disk_state

APP = """\
import os
import redis
from flask import Flask

app = Flask(__name__)
db = redis.Redis(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]), ssl=True,
                 ssl_certfile="/tls/client.crt", ssl_keyfile="/tls/client.key",
                 ssl_ca_certs="/tls/redis-ca.crt")
with open("/tls/motd.txt") as f:
    MOTD = f.read()

@app.get("/count")
def count():
    return {"count": db.incr("hits"), "motd": MOTD}

app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True,
        ssl_context=("/tls/flask.crt", "/tls/flask.key"))
"""

REDIS = """\
name: redis-e2e
version: "0.3"
services:
  - name: redis
    image_name: redis_image
    mrenclaves: [{measurement}]
    command: >-
      redis-server --port 0 --tls-port {port} --bind 127.0.0.1
      --tls-cert-file {shm}/redis.crt --tls-key-file {shm}/redis.key
      --tls-ca-cert-file {shm}/ca.crt --tls-auth-clients yes
      --save "" --appendonly no --protected-mode no
images:
  - name: redis_image
    injection_files:
      - path: {shm}/ca.crt
        content: $$SCONE::redis_ca_cert.chain$$
      - path: {shm}/redis.crt
        content: $$SCONE::redis.crt$$
      - path: {shm}/redis.key
        content: $$SCONE::redis.key$$
        permission: 0600
secrets:
  - name: redis_key
    kind: private-key
  - name: redis
    kind: x509
    private_key: redis_key
    issuer: redis_ca_cert
    san: ["dns:redis", "dns:localhost", "ip:127.0.0.1"]
  - name: redis_client_key
    kind: private-key
    export:
    - session: flask-e2e
  - name: redis_client_cert
    kind: x509
    issuer: redis_ca_cert
    private_key: redis_client_key
    endpoint: client
    export:
    - session: flask-e2e
  - name: redis_ca_key
    kind: private-key
  - name: redis_ca_cert
    kind: x509-ca
    private_key: redis_ca_key
    export:
    - session: flask-e2e
security:
  attestation:
    tolerate: [debug-mode]
"""

FLASK = """\
name: flask-e2e
version: "0.3"
services:
  - name: api
    image_name: api_image
    mrenclaves: [{measurement}]
    command: python3 {app}
    environment:
      REDIS_HOST: localhost
      REDIS_PORT: {redis_port}
      PORT: {api_port}
images:
  - name: api_image
    injection_files:
      - path: /tls/redis-ca.crt
        content: $$SCONE::redis_ca_cert.chain$$
      - path: /tls/client.crt
        content: $$SCONE::redis_client_cert.crt$$
      - path: /tls/client.key
        content: $$SCONE::redis_client_cert.key$$
      - path: /tls/flask.crt
        content: $$SCONE::flask:crt$$
      - path: /tls/flask.key
        content: $$SCONE::flask:privatekey$$
      - path: /tls/motd.txt
        content: "hello from the policy"
secrets:
  - name: redis_client_key
    import: {{session: redis-e2e, secret: redis_client_key}}
  - name: redis_client_cert
    import: {{session: redis-e2e, secret: redis_client_cert}}
  - name: redis_ca_cert
    import: {{session: redis-e2e, secret: redis_ca_cert}}
  - name: api_ca_key
    kind: private-key
  - name: api_ca_cert
    kind: x509-ca
    private_key: api_ca_key
    export_public: true
  - name: flask_key
    kind: private-key
  - name: flask
    kind: x509
    private_key: flask_key
    issuer: api_ca_cert
    dns: [api]
security:
  attestation:
    tolerate: [debug-mode]
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed: apt-get install redis-server redis-tools")
    root = tmp_path_factory.mktemp("flask-redis")
    tls_before = disk_state("/tls")
    shm = Path("/dev/shm") / f"cloister-e2e-{root.name}"
    app = root / "app.py"
    app.write_text(APP)
    redis_port, api_port = free_port(), free_port()
    redis_measurement = subprocess.run([CLOISTER, "measure", "redis-server"], check=True,
                                       capture_output=True, text=True).stdout.strip()
    procs: list[subprocess.Popen[bytes]] = []
    with platform(root) as plat:
        plat.create(REDIS.format(measurement=redis_measurement, port=redis_port, shm=shm))
        plat.create(FLASK.format(measurement=python_measurement(), app=app,
                                 redis_port=redis_port, api_port=api_port))
        try:
            for config_id, command in (("redis-e2e/redis", ["--", "redis-server"]),
                                       ("flask-e2e/api", [])):
                with (root / f"{config_id.split('/')[1]}.log").open("wb") as log:
                    procs.append(subprocess.Popen([CLOISTER, "run", *command],
                                                  env=plat.env(config_id), stdout=log,
                                                  stderr=subprocess.STDOUT))
            ca = root / "api-ca.pem"
            values = plat.cas.curl("/v1/values/session=flask-e2e", insecure=True).json()
            ca.write_text(values["values"]["api_ca_cert"]["value"])
            yield {"plat": plat, "root": root, "shm": shm, "ca": ca, "api_port": api_port,
                   "redis_port": redis_port, "tls_before": tls_before}
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            shutil.rmtree(shm, ignore_errors=True)


def curl_api(system: dict[str, object], *extra: str) -> subprocess.CompletedProcess[str]:
    port = system["api_port"]
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", str(system["ca"]), "--resolve",
         f"api:{port}:127.0.0.1", *extra, f"https://api:{port}/count"],
        capture_output=True, text=True,
    )


def wait_for_api(system: dict[str, object]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        done = curl_api(system)
        if done.returncode == 0 and done.stdout.startswith("{"):
            return dict(json.loads(done.stdout))
        if time.monotonic() > deadline:
            root = Path(str(system["root"]))
            logs = {p.name: p.read_text()[-2000:] for p in root.glob("*.log")}
            raise AssertionError(f"API never answered: {done.stderr} {logs}")
        time.sleep(0.3)


def test_flask_talks_to_redis_over_mutual_tls(system: dict[str, object]) -> None:
    first = wait_for_api(system)
    assert first["motd"] == "hello from the policy"
    second = json.loads(curl_api(system).stdout)
    assert second["count"] == int(str(first["count"])) + 1
    assert disk_state("/tls") == system["tls_before"], "injected files reached the disk"


def test_api_certificate_is_verified_by_the_exported_ca(system: dict[str, object]) -> None:
    wait_for_api(system)
    port = system["api_port"]
    done = subprocess.run(["curl", "-sS", "--max-time", "5", "--resolve",
                           f"api:{port}:127.0.0.1", f"https://api:{port}/count"],
                          capture_output=True, text=True)
    assert done.returncode == 60, done  # curl: peer certificate cannot be authenticated


def test_redis_refuses_clients_without_its_client_certificate(
    system: dict[str, object],
) -> None:
    wait_for_api(system)
    shm = Path(str(system["shm"]))
    done = subprocess.run(
        ["redis-cli", "--tls", "--cacert", str(shm / "ca.crt"), "-p", str(system["redis_port"]),
         "-h", "127.0.0.1", "PING"], capture_output=True, text=True, timeout=10,
    )
    assert "PONG" not in done.stdout
