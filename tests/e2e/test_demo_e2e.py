"""What a newcomer runs: ``cloister demo up``, then the seed's requests in a shell.

One demo per module (per xdist worker); each test uses its own patient ids.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from demo_harness import CLOISTER, FIELDS, SEED_FORM, Demo, seed_walkthrough

from cloister.attest import generate_ephemeral_key, public_key_bytes_of, report_data
from cloister.attest.simulation import sign_simulation
from cloister.demo import Layout
from support import disk_state


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    d = Demo.fresh(tmp_path_factory.mktemp("demo") / "demo")
    d.tls_before = disk_state("/tls")
    d.up()
    try:
        yield d
    finally:
        d.cli("demo", "down", "--dir", str(d.dir))


def test_seed_walkthrough_in_a_shell(demo: Demo, tmp_path: Path) -> None:
    """The seed's "Testing the service", with this demo's ports."""
    seed_walkthrough(demo, tmp_path)


def test_myenv_names_the_sessions_and_the_cas(demo: Demo, tmp_path: Path) -> None:
    done = demo.bash('echo "$FLASK_SESSION $REDIS_SESSION $SCONE_CAS_ADDR $CLOISTER_CAS_ADDR"',
                     tmp_path)
    flask, redis, scone_cas, cloister_cas = done.stdout.split()
    assert flask.startswith("patients-flask-") and redis.startswith("patients-redis-")
    assert scone_cas == "127.0.0.1"  # a host: the seed's curl appends :8081 itself
    assert cloister_cas == f"127.0.0.1:{demo.cas_port}"


def test_curl_without_the_api_ca_fails_verification(demo: Demo, tmp_path: Path) -> None:
    done = demo.bash('curl -sS -X GET "$URL/patient/patient_3" --resolve "$RESOLVE"', tmp_path)
    assert done.returncode == 60, (done.returncode, done.stderr)  # peer certificate not trusted
    assert "certificate" in done.stderr


def test_plain_http_gets_no_http_answer(demo: Demo, tmp_path: Path) -> None:
    done = demo.bash(f'curl -sS -m 10 -o /dev/null -w "%{{http_code}}" '
                     f'http://127.0.0.1:{demo.api_port}/patient/patient_3', tmp_path)
    assert done.returncode != 0
    assert done.stdout == "000"  # no HTTP status line came back


def test_redis_speaks_tls_with_the_policy_certificate(demo: Demo, tmp_path: Path) -> None:
    """Control for the refusals below: a TLS server is there, with the CAS-issued cert."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{demo.redis_port}", "-brief"],
        input="", capture_output=True, text=True, timeout=30)
    assert "CN = redis" in done.stderr + done.stdout or "CN=redis" in done.stderr + done.stdout


def _redis_cli(demo: Demo, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "--tls", "--insecure", "-h", "127.0.0.1", "-p", str(demo.redis_port),
         *extra, "SET", "intruder", "x"],
        capture_output=True, text=True, timeout=30)


def test_redis_refuses_a_client_without_certificate(demo: Demo) -> None:
    done = _redis_cli(demo)
    assert "OK" not in done.stdout
    assert done.returncode != 0 or "Error" in done.stdout + done.stderr


def test_redis_refuses_a_certificate_from_another_ca(demo: Demo, tmp_path: Path) -> None:
    key, cert = tmp_path / "other.key", tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=redis_client_cert"], check=True,
                   capture_output=True)
    done = _redis_cli(demo, "--cert", str(cert), "--key", str(key))
    assert "OK" not in done.stdout
    assert done.returncode != 0 or "Error" in done.stdout + done.stderr


def test_second_post_of_an_id_is_409(demo: Demo, tmp_path: Path) -> None:
    url = f"https://api:{demo.api_port}/patient/dup_1"
    status, first = demo.api(tmp_path, "-X", "POST", url, "-d", SEED_FORM)
    assert status == 201 and first["id"] == "dup_1"
    status, again = demo.api(tmp_path, "-X", "POST", url, "-d", SEED_FORM.replace("Jane", "Eve"))
    assert status == 409
    assert again["error"]["code"] == "exists"
    status, kept = demo.api(tmp_path, url)
    assert status == 200 and kept == first


def test_missing_fields_are_400_naming_them(demo: Demo, tmp_path: Path) -> None:
    url = f"https://api:{demo.api_port}/patient/partial_1"
    status, answer = demo.api(tmp_path, "-X", "POST", url, "-d", "fname=Jane&lname=Doe")
    assert status == 400
    assert answer["error"]["missing"] == [f for f in FIELDS if f not in ("fname", "lname")]
    assert "ssn" in answer["error"]["message"]
    status, _ = demo.api(tmp_path, url)
    assert status == 404  # nothing half-stored


def test_unknown_patient_is_404_and_oversize_body_413(demo: Demo, tmp_path: Path) -> None:
    status, answer = demo.api(tmp_path, f"https://api:{demo.api_port}/score/nobody")
    assert status == 404 and answer["error"]["code"] == "not_found"
    big = tmp_path / "big"
    big.write_text("fname=" + "x" * 200_000)
    status, answer = demo.api(tmp_path, "-X", "POST",
                              f"https://api:{demo.api_port}/patient/big_1",
                              "--data-binary", f"@{big}")
    assert status == 413 and answer["error"]["code"] == "too_large"


def test_no_secret_file_or_patient_field_on_disk(demo: Demo, tmp_path: Path) -> None:
    ssn = "987-65-4321-unique"
    status, _ = demo.api(tmp_path, "-X", "POST", f"https://api:{demo.api_port}/patient/secret_1",
                         "-d", SEED_FORM.replace("123-223-2345", ssn))
    assert status == 201
    assert disk_state("/tls") == demo.tls_before, "the API's injected files must stay in memory"
    logs = [p for p in demo.dir.rglob("*.log") if p.is_file()]
    assert {p.name for p in logs} >= {"api.log", "redis.log", "cas.log", "las.log"}
    for log in logs:
        text = log.read_text(errors="replace")
        assert ssn not in text, f"patient SSN in {log}"
        assert "PRIVATE KEY" not in text, f"a private key in {log}"


def test_data_survives_down_up_and_kill_9_of_redis(tmp_path: Path) -> None:
    """Its own demo: it stops and restarts everything."""
    d = Demo.fresh(tmp_path / "demo")
    d.up()
    try:
        url = f"https://api:{d.api_port}/patient/kept_1"
        status, posted = d.api(tmp_path, "-X", "POST", url, "-d", SEED_FORM)
        assert status == 201

        pids = {name: d.pid(name) for name in ("cas", "las", "redis", "api")}
        d.down()
        for name, pid in pids.items():
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z", name
        assert not Layout.of(d.dir).redis_tls.exists(), "down leaves Redis's keys in memory"
        again = d.up()
        assert "reusing the sealed tree" in again.stdout
        assert again.stdout.count(": unchanged") == 2, again.stdout  # same certificates
        assert d.api(tmp_path, url) == (200, posted)

        redis_pid = d.pid("redis")
        os.kill(redis_pid, signal.SIGKILL)
        while Path(f"/proc/{redis_pid}").exists():  # its parent, cloister demo up, is gone
            time.sleep(0.05)
        status, answer = d.api(tmp_path, url)
        assert status == 503 and answer["error"]["code"] == "unavailable"  # JSON, not a 500
        d.up()  # stops what is left of the previous up, starts everything again
        assert d.api(tmp_path, url) == (200, posted)
    finally:
        d.cli("demo", "down", "--dir", str(d.dir))


def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    d = Demo.fresh(tmp_path / "demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
    proc = subprocess.Popen(
        [CLOISTER, "demo", "up", "--dir", str(d.dir), "--cas-port", str(d.cas_port),
         "--redis-port", str(d.redis_port),
         "--api-port", str(d.api_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Press Ctrl-C" in line:
                break
        assert any("Press Ctrl-C" in line for line in seen), "".join(seen)
        pids = [d.pid(name) for name in ("cas", "las", "redis", "api")]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, rest
        assert "stopped api, redis, las, cas" in rest
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        d.cli("demo", "down", "--dir", str(d.dir))


def test_a_failing_step_stops_what_was_started(tmp_path: Path) -> None:
    """A typo in a policy template: one clear error, and the CAS and LAS are stopped."""
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "patients", app)
    flask = app / "policies" / "flask.yml"
    flask.write_text(flask.read_text().replace("image_name:", "imagename:"))
    d = Demo.fresh(tmp_path / "demo")
    done = d.cli("demo", "up", "--detach", "--dir", str(d.dir), "--app", str(app),
                 "--cas-port", str(d.cas_port),
                 "--redis-port", str(d.redis_port), "--api-port", str(d.api_port))
    assert done.returncode != 0
    assert "imagename" in done.stderr
    assert "Traceback" not in done.stderr
    assert "stopped" in done.stdout and "cas" in done.stdout
    assert not list((d.dir / "pids").glob("*.json"))


def test_a_failure_after_redis_started_leaves_no_key_on_tmpfs(tmp_path: Path) -> None:
    """The API dies at start: everything stops, and Redis's injected key is removed."""
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "patients", app)
    (app / "rest_api.py").write_text("raise SystemExit('the API refuses to start')\n")
    d = Demo.fresh(tmp_path / "demo")
    done = d.cli("demo", "up", "--detach", "--dir", str(d.dir), "--app", str(app),
                 "--cas-port", str(d.cas_port),
                 "--redis-port", str(d.redis_port), "--api-port", str(d.api_port))
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert "redis" in done.stdout.split("stopped")[-1]
    assert not Layout.of(d.dir).redis_tls.exists(), "Redis's TLS key left on tmpfs"
    assert not list((d.dir / "pids").glob("*.json"))


def test_up_after_a_template_change_updates_the_session(tmp_path: Path) -> None:
    """A changed template is an update (the CAS answers 200, not 201): up must succeed."""
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "patients", app)
    d = Demo.fresh(tmp_path / "demo")

    def up() -> subprocess.CompletedProcess[str]:
        return d.cli("demo", "up", "--detach", "--dir", str(d.dir), "--app", str(app),
                     "--cas-port", str(d.cas_port),
                     "--redis-port", str(d.redis_port), "--api-port", str(d.api_port))

    first = up()
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        url = f"https://api:{d.api_port}/patient/kept_2"
        status, posted = d.api(tmp_path, "-X", "POST", url, "-d", SEED_FORM)
        assert status == 201
        d.down()
        redis = app / "policies" / "redis.yml"
        redis.write_text(redis.read_text().replace("--protected-mode no",
                                                   "--protected-mode no --maxclients 1000"))
        again = up()
        assert again.returncode == 0, again.stdout + again.stderr
        stored = [line.strip() for line in again.stdout.splitlines() if "session " in line
                  and ": " in line and "storing" not in line]
        assert any("redis" in line and line.endswith("updated (new certificates)")
                   for line in stored), stored
        assert d.api(tmp_path, url) == (200, posted)  # the data survived the update
    finally:
        d.cli("demo", "down", "--dir", str(d.dir))


def test_a_forged_evidence_from_a_key_nobody_enrolled_gets_nothing(demo: Demo) -> None:
    """(a) against the real demo: a client with no LAS signs its own simulation evidence
    claiming the API's (public) measurement; the CAS refuses it as not enrolled."""
    names = json.loads((demo.dir / "sessions.json").read_text())
    cacert = demo.dir / "cas" / "cas-ca.pem"
    url = f"https://localhost:{demo.cas_port}"

    def post(path: str, body: str) -> tuple[str, str]:
        done = subprocess.run(["curl", "-sS", "--cacert", str(cacert), "-w", "\n%{http_code}",
                               "-H", "Content-Type: application/json", "-d", body, url + path],
                              capture_output=True, text=True, timeout=60)
        text, _, status = done.stdout.rpartition("\n")
        return status, text

    nonce = bytes.fromhex(json.loads(post("/v1/attest/nonce", "{}")[1])["nonce"])
    key = public_key_bytes_of(generate_ephemeral_key())
    measured = subprocess.run([CLOISTER, "measure"], capture_output=True, text=True,
                              check=True).stdout.strip()
    forged = sign_simulation(Ed25519PrivateKey.generate(), measurement=measured, fspf_tag=None,
                             report_data_hex=report_data(nonce, key).hex(), uid=os.getuid(),
                             gid=os.getgid())
    status, text = post("/v1/attest/config", json.dumps({
        "config_id": f"{names['flask']}/flask_restapi", "nonce": nonce.hex(),
        "public_key": key.hex(), "evidence": base64.b64encode(forged).decode()}))
    assert status == "403" and "sealed_config" not in text
    assert json.loads(text)["error"]["message"] == "attestation refused"
    audit = (demo.dir / "cas" / "audit.log").read_text().splitlines()
    assert "is not enrolled: simulation evidence counts only from a quoting key" in audit[-1]
