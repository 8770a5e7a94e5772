"""The patient service (examples/patients/rest_api.py, unmodified) and Redis, each under
``cloister run``, with a CAS and LAS on free ports — the stack the service faults break.

The flask session also carries an ``ascii`` and a ``binary`` secret (environment and an
injected file) so the secret-leak sweep has every secret kind to look for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fault_harness import REPO

from cas_harness import CLOISTER, free_port  # isort: skip
from run_harness import Platform, python_measurement  # isort: skip

from cloister.runtime._volumes import unmount

API = REPO / "examples" / "patients" / "rest_api.py"

REDIS = """\
name: fault-redis
version: "0.3"
services:
  - name: redis
    image_name: redis_image
    mrenclaves: [{measurement}]
    command: >-
      redis-server --port 0 --tls-port {port} --bind 127.0.0.1
      --tls-cert-file {shm}/redis.crt --tls-key-file {shm}/redis.key
      --tls-ca-cert-file {shm}/redis-ca.crt --tls-auth-clients yes
      --appendonly yes --dir {data} --save "" --protected-mode no
images:
  - name: redis_image
    injection_files:
      - path: {shm}/redis-ca.crt
        content: $$SCONE::redis_ca_cert.chain$$
      - path: {shm}/redis.crt
        content: $$SCONE::redis.crt$$
      - path: {shm}/redis.key
        content: $$SCONE::redis.key$$
    volumes:
      - name: redis_data
        path: {data}
volumes:
  - name: redis_data
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
    export: [{{session: fault-flask}}]
  - name: redis_client_cert
    kind: x509
    issuer: redis_ca_cert
    private_key: redis_client_key
    endpoint: client
    export: [{{session: fault-flask}}]
  - name: redis_ca_key
    kind: private-key
  - name: redis_ca_cert
    kind: x509-ca
    private_key: redis_ca_key
    export: [{{session: fault-flask}}]
security:
  attestation:
    tolerate: [debug-mode]
"""

FLASK = """\
name: fault-flask
version: "0.3"
services:
  - name: api
    image_name: api_image
    mrenclaves: [{measurement}]
    command: python3 {api}
    environment:
      REDIS_HOST: localhost
      REDIS_PORT: "{redis_port}"
      API_PORT: "{api_port}"
      DB_PASSWORD: $$SCONE::db_password$$
      BLOB_B64: $$SCONE::blob:base64$$
    pwd: /
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
        content: $$SCONE::flask.crt$$
      - path: /tls/flask.key
        content: $$SCONE::flask.key$$
      - path: /tls/blob.bin
        content: $$SCONE::blob$$
secrets:
  - name: redis_client_key
    import: {{session: fault-redis, secret: redis_client_key}}
  - name: redis_client_cert
    import: {{session: fault-redis, secret: redis_client_cert}}
  - name: redis_ca_cert
    import: {{session: fault-redis, secret: redis_ca_cert}}
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
    endpoint: server
  - name: db_password
    kind: ascii
    size: 32
  - name: blob
    kind: binary
    size: 32
security:
  attestation:
    tolerate: [debug-mode]
"""

#: the seed's POST form (examples/patients: every field required)
FORM = {
    "fname": "Jane", "lname": "Doe", "address": "123 Main Street", "city": "Richmond",
    "state": "Washington", "ssn": "123-223-2345", "email": "nr@aaa.com", "dob": "01/01/2010",
    "contactphone": "123-234-3456", "drugallergies": "Sulpha", "preexistingconditions": "none",
    "dateadmitted": "01/05/2010", "insurancedetails": "Primera Blue Cross",
}


def _core_unlimited() -> list[str]:
    """A prefix that runs a command with ``ulimit -c unlimited`` (prlimit execs it: same pid),
    as a careless host would: the runtime, not the host, must keep secrets out of cores."""
    return ["prlimit", "--core=unlimited"] if shutil.which("prlimit") else []


@dataclass
class Stack:
    plat: Platform
    root: Path
    shm: Path
    redis_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.root / "api-ca.pem"

    @property
    def data(self) -> Path:
        return self.root / "redis-data"

    def create_sessions(self) -> None:
        redis_measurement = subprocess.run([CLOISTER, "measure", "redis-server"], check=True,
                                           capture_output=True, text=True).stdout.strip()
        self.data.mkdir(exist_ok=True)
        self.plat.create(REDIS.format(measurement=redis_measurement, port=self.redis_port,
                                      shm=self.shm, data=self.data))
        self.plat.create(FLASK.format(measurement=python_measurement(), api=API,
                                      redis_port=self.redis_port, api_port=self.api_port))
        values = self.plat.cas.curl("/v1/values/session=fault-flask", insecure=True).json()
        self.ca.write_text(values["values"]["api_ca_cert"]["value"])

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """``cloister run`` of ``redis`` or ``api`` (logs appended to ROOT/NAME.log)."""
        config_id, command = {"redis": ("fault-redis/redis", ["--", "redis-server"]),
                              "api": ("fault-flask/api", [])}[name]
        with (self.root / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([*_core_unlimited(), CLOISTER, "run", *command],
                                    env=self.plat.env(config_id, CLOISTER_RETRY_SECONDS="30"),
                                    stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)
        shutil.rmtree(self.shm, ignore_errors=True)
        unmount(str(self.data))  # Redis's encrypted volume

    # --- talking to the API -------------------------------------------------------------

    def curl(self, *args: str, timeout: float = 10) -> tuple[int, dict]:  # type: ignore[type-arg]
        """(status, JSON body) of one verified HTTPS request; (0, {}) when none came back."""
        done = subprocess.run(
            ["curl", "-sS", "--max-time", str(timeout), "--cacert", str(self.ca), "-w",
             "\n%{http_code}", "--resolve", f"api:{self.api_port}:127.0.0.1", *args],
            capture_output=True, text=True)
        body, _, status = done.stdout.rpartition("\n")
        if done.returncode != 0 or not status.isdigit() or status == "000":
            return 0, {}
        try:
            return int(status), json.loads(body)
        except ValueError:
            return int(status), {"raw": body}

    def url(self, path: str) -> str:
        return f"https://api:{self.api_port}{path}"

    def post_patient(self, patient: str, **fields: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        form = {**FORM, **fields}
        args = [a for k, v in form.items() for a in ("--data-urlencode", f"{k}={v}")]
        return self.curl("-X", "POST", *args, self.url(f"/patient/{patient}"))

    def wait_ready(self, deadline_s: float = 90) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            status, body = self.curl(self.url("/patient/ready-probe"))
            if status == 404:
                return  # the API answered and reached Redis
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text(errors="replace")[-1500:]
                        for p in self.root.glob("*.log")}
                raise AssertionError(f"the API never became ready ({status} {body}): {logs}")
            time.sleep(0.3)


def shm_dir(root: Path) -> Path:
    return Path("/dev/shm") / f"cloister-fault-{root.name}-{os.getpid()}"
