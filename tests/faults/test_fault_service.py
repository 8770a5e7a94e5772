"""Faults of the running patient service: CAS restart, Redis killed under load, TLS posture.

One stack per module (per xdist worker): CAS + LAS, Redis and the unmodified
examples/patients/rest_api.py, both under ``cloister run``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from fault_stack import Stack, shm_dir

from run_harness import platform  # isort: skip

from cloister.cas import ServerConfig, open_store
from cloister.secrets import CLOCK_SKEW, DEFAULT_VALIDITY, SecretValue


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (Path("/usr/bin/redis-server").exists() or Path("/usr/local/bin/redis-server").exists()):
        pytest.skip("redis-server not installed: apt-get install redis-server redis-tools")
    root = tmp_path_factory.mktemp("fault-service")
    with platform(root) as plat:
        s = Stack(plat, root, shm_dir(root))
        try:
            s.create_sessions()
            s.start("redis")
            s.start("api")
            s.wait_ready()
            yield s
        finally:
            s.stop()


def test_running_service_is_unaffected_by_a_cas_restart(stack: Stack) -> None:
    assert stack.post_patient("cas-restart-1")[0] == 201
    stack.plat.cas.stop()  # SIGTERM: the CAS is gone
    try:
        assert stack.curl(stack.url("/patient/cas-restart-1"))[0] == 200
        assert stack.post_patient("cas-restart-2")[0] == 201  # writes go on too
    finally:
        stack.plat.cas.start()
    assert stack.curl(stack.url("/patient/cas-restart-2"))[0] == 200
    assert stack.procs["api"].poll() is None and stack.procs["redis"].poll() is None


def test_redis_killed_under_load_gives_503_json_and_loses_nothing(stack: Stack) -> None:
    acknowledged: dict[str, float] = {}
    answers: list[tuple[int, dict]] = []  # type: ignore[type-arg]
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            patient = f"load-{n}-{i}"
            i += 1
            status, body = stack.post_patient(patient, lname=f"L{n}-{i}")
            with lock:
                answers.append((status, body))
                if status == 201:
                    acknowledged[patient] = body["score"]

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        _wait(lambda: len(acknowledged) >= 20, "20 acknowledged writes before the kill")
        redis_pid = stack.procs["redis"].pid  # cloister run exec'd redis-server: same pid
        stack.kill("redis", signal.SIGKILL)
        assert not Path(f"/proc/{redis_pid}/status").exists()
        with lock:
            seen = len(answers)
        _wait(lambda: sum(1 for s, _ in answers[seen:] if s == 503) >= 5, "503s while down")
        stack.start("redis")  # the API is not restarted
        with lock:
            seen = len(answers)
        _wait(lambda: sum(1 for s, _ in answers[seen:] if s == 201) >= 10,
              "writes succeed again after Redis is back")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    statuses = {s for s, _ in answers}
    assert statuses <= {201, 503}, statuses  # never a 500, never a dropped connection (0)
    for status, body in answers:
        if status == 503:
            assert body["error"]["code"] == "unavailable", body
    for patient, score in acknowledged.items():  # AOF: every acknowledged record is back
        status, body = stack.curl(stack.url(f"/patient/{patient}"))
        assert status == 200 and body["score"] == score, (patient, status, body)


def _wait(condition: object, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)


# --- TLS posture --------------------------------------------------------------------------


def _s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    # SECLEVEL=0 lets *our* client offer TLS 1.0/1.1: a refusal then comes from the server
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-cipher", "DEFAULT@SECLEVEL=0",
         *args], input="", capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("service", ["api", "cas"])
def test_tls_below_1_2_is_refused(stack: Stack, service: str) -> None:
    port = stack.api_port if service == "api" else stack.plat.cas.port
    control = _s_client(port, "-tls1_2")
    assert control.returncode == 0 and "TLSv1.2" in control.stdout, control.stdout[-800:]
    for old in ("-tls1_1", "-tls1"):
        done = _s_client(port, old)
        assert done.returncode != 0, (old, done.stdout[-800:])
        assert "Cipher is (NONE)" in done.stdout or "no protocols" not in done.stderr, done.stderr


@pytest.mark.parametrize("service", ["api", "cas"])
def test_plain_http_is_refused(stack: Stack, service: str) -> None:
    port = stack.api_port if service == "api" else stack.plat.cas.port
    done = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                           f"http://127.0.0.1:{port}/healthz"], capture_output=True, text=True)
    body, _, status = done.stdout.rpartition("\n")
    # either no HTTP answer at all, or a 400 telling the client to use HTTPS: never content
    assert status in ("000", "400"), done
    assert "ok" not in body.lower() or "https" in body.lower()


def _redis_cli(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "--tls", "-h", "127.0.0.1", "-p", str(stack.redis_port), *extra,
         "SET", "intruder", "x"], capture_output=True, text=True, timeout=30)


def test_redis_refuses_certificateless_and_wrong_ca_clients(stack: Stack,
                                                            tmp_path: Path) -> None:
    # cloister run placed the policy's {shm}/redis-ca.crt in its private run directory
    placed = list(Path("/dev/shm").glob(
        f"cloister-run-{os.geteuid()}-*{stack.shm}/redis-ca.crt"))
    assert len(placed) == 1, placed
    ca = placed[0]
    # control: the policy's own client certificate gets in (read from the store, as the CAS
    # would release it; written 0600 to a test directory only)
    client_crt, client_key = _redis_client_files(stack, tmp_path)
    ok = _redis_cli(stack, "--cacert", str(ca), "--cert", str(client_crt), "--key",
                    str(client_key))
    assert "OK" in ok.stdout, ok
    none = _redis_cli(stack, "--cacert", str(ca))
    assert "OK" not in none.stdout, none
    key, cert = tmp_path / "other.key", tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=redis_client_cert"], check=True,
                   capture_output=True)
    wrong = _redis_cli(stack, "--cacert", str(ca), "--cert", str(cert), "--key", str(key))
    assert "OK" not in wrong.stdout, wrong
    _redis_cli_get = subprocess.run(
        ["redis-cli", "--tls", "-h", "127.0.0.1", "-p", str(stack.redis_port), "--cacert",
         str(ca), "--cert", str(client_crt), "--key", str(client_key), "GET", "intruder"],
        capture_output=True, text=True, timeout=30)
    assert _redis_cli_get.stdout.strip() == "x"  # only the control's write landed
    subprocess.run(["redis-cli", "--tls", "-h", "127.0.0.1", "-p", str(stack.redis_port),
                    "--cacert", str(ca), "--cert", str(client_crt), "--key", str(client_key),
                    "DEL", "intruder"], capture_output=True, timeout=30)


def _values(stack: Stack, session: str) -> dict[str, SecretValue]:
    store = open_store(ServerConfig(state=stack.plat.cas.state))
    try:
        record = store.current(session)
        assert record is not None
        return {k: SecretValue.from_bytes(v)
                for k, v in store.secrets(session, record.hash).items()}
    finally:
        store.close()


def _redis_client_files(stack: Stack, directory: Path) -> tuple[Path, Path]:
    value = _values(stack, "fault-redis")["redis_client_cert"]
    key = _values(stack, "fault-redis")["redis_client_key"]
    crt, kf = directory / "client.crt", directory / "client.key"
    crt.write_text(value.cert_pem or "")
    kf.touch(mode=0o600)
    kf.write_text(key.key_pem or "")
    return crt, kf


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _lifetime_ok(cert: x509.Certificate, validity: object) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert end - start <= validity + CLOCK_SKEW + CLOCK_SKEW, (start, end)  # type: ignore[operator]
    assert start <= start.now(start.tzinfo) < end


def test_generated_certificates_have_expected_usages_and_lifetimes(stack: Stack) -> None:
    flask, redis = _values(stack, "fault-flask"), _values(stack, "fault-redis")
    load = x509.load_pem_x509_certificate

    def cert(value: SecretValue) -> x509.Certificate:
        return load((value.cert_pem or "").encode())

    server = cert(flask["flask"])
    assert _eku(server) == {EKU.SERVER_AUTH}
    client = cert(redis["redis_client_cert"])
    assert _eku(client) == {EKU.CLIENT_AUTH}
    both = cert(redis["redis"])  # no endpoint: server and client
    assert _eku(both) == {EKU.SERVER_AUTH, EKU.CLIENT_AUTH}
    for leaf in (server, client, both):
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and not usage.key_cert_sign
        _lifetime_ok(leaf, DEFAULT_VALIDITY)
    for ca_value in (flask["api_ca_cert"], redis["redis_ca_cert"]):
        ca = cert(ca_value)
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign
        _lifetime_ok(ca, DEFAULT_VALIDITY)
    # the served API certificate is the one in the store: the workload got these values
    served = subprocess.run(
        f"openssl s_client -connect 127.0.0.1:{stack.api_port} -servername api </dev/null "
        "2>/dev/null | openssl x509", shell=True, capture_output=True, text=True).stdout
    assert load(served.encode()) == server
    # the CAS's own: a CA and a server certificate
    cas_ca = load((stack.plat.cas.state / "cas-ca.pem").read_bytes())
    assert cas_ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cas_served = subprocess.run(
        f"openssl s_client -connect 127.0.0.1:{stack.plat.cas.port} </dev/null 2>/dev/null "
        "| openssl x509", shell=True, capture_output=True, text=True).stdout
    cas_server = load(cas_served.encode())
    assert EKU.SERVER_AUTH in _eku(cas_server)
    assert cas_server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cas_server.not_valid_after_utc - cas_server.not_valid_before_utc <= \
        DEFAULT_VALIDITY  # 825 days for the CAS server certificate, well under


def test_workloads_cannot_dump_core(stack: Stack) -> None:
    """A core file of the API or Redis would put their secrets on disk; the host had
    ``ulimit -c unlimited`` (see fault_stack), so the runtime must turn it off."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) missing: cannot start the workloads with cores on")
    for name in ("api", "redis"):
        limits = Path(f"/proc/{stack.procs[name].pid}/limits").read_text()
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max core file size"))
        assert line.split()[4:6] == ["0", "0"], (name, line)
