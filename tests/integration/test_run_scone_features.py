"""SCONE's second factors, shared policy, shared volumes and singletons, end to end:
real CAS and LAS processes, ``cloister run`` started as an operator would."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER
from run_harness import Platform, python_measurement

from cloister.cas._service_gates import OTP_STEP_SECONDS, totp
from cloister.runtime._volumes import unmount

OTP_SECRET = "BASE32SECRET3232BASE32SECRET3232"
OTP_KEY = base64.b32decode(OTP_SECRET)
LEASE_SECONDS = 2

PROGRAM = "import os, sys\nprint('ran', os.environ.get('ROLE', ''), flush=True)\n"
SLEEPER = ("import os, sys, time\nprint('up', flush=True)\n"
           "deadline = time.time() + 60\n"
           "while time.time() < deadline and not os.path.exists(os.environ['STOP']):\n"
           "    time.sleep(0.1)\n")


def _service(program: Path, measurement: str, extra: str = "", env: str = "") -> str:
    return f"""\
services:
  - name: app
    mrenclaves: [{measurement}]
    command: python3 {program}
    environment:
      ROLE: app
      STOP: {program.parent}/stop
{env}{extra}"""


def _security(extra: str = "") -> str:
    return f"security:\n  attestation:\n    tolerate: [debug-mode]\n{extra}"


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = Platform(tmp_path_factory.mktemp("scone"))
    saved = os.environ.get("CLOISTER_SINGLETON_LEASE_SECONDS")
    os.environ["CLOISTER_SINGLETON_LEASE_SECONDS"] = str(LEASE_SECONDS)  # the CAS's setting
    try:
        p.cas.start()
    finally:
        if saved is None:
            os.environ.pop("CLOISTER_SINGLETON_LEASE_SECONDS")
        else:
            os.environ["CLOISTER_SINGLETON_LEASE_SECONDS"] = saved
    p.las.start()
    p.enroll()  # simulation evidence counts only from a LAS the sessions' owner enrolled
    try:
        yield p
    finally:
        p.las.stop()
        p.cas.stop()


@pytest.fixture(scope="module")
def measurement() -> str:
    return python_measurement()


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(PROGRAM)
    return path


def _now_otp(key: bytes = OTP_KEY) -> str:
    # not in the last two seconds of a step: the code must still count when it arrives
    while time.time() % OTP_STEP_SECONDS > OTP_STEP_SECONDS - 2:
        time.sleep(0.5)
    return totp(key, int(time.time()) // OTP_STEP_SECONDS)


# --- one-time passwords ---------------------------------------------------------------


def test_otp_is_accepted_in_its_window_and_refused_outside_it_or_on_replay(
    plat: Platform, program: Path, measurement: str
) -> None:
    plat.create(f'name: otp\nversion: "0.3.10"\n{_service(program, measurement)}' + _security(
        f"    one_time_password_shared_secret: {OTP_SECRET}\n"))
    missing = plat.run("otp/app")
    assert missing.returncode == 3, missing.stderr
    assert "requires a one-time password" in missing.stderr
    stale = totp(OTP_KEY, int(time.time()) // OTP_STEP_SECONDS - 3)
    outside = plat.run(f"otp/app@{stale}")
    assert outside.returncode == 3 and "outside its 30-second window" in outside.stderr
    code = _now_otp()
    accepted = plat.run(f"otp/app@{code}")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "ran app"
    replay = plat.run(f"otp/app@{code}")
    assert replay.returncode == 3, replay.stdout
    assert "was used already" in replay.stderr
    assert "ran" not in replay.stdout


def test_a_per_service_otp_from_a_binary_secret(
    plat: Platform, program: Path, measurement: str
) -> None:
    raw = bytes(range(1, 21))
    otp_line = "    one_time_password_shared_secret: $$SCONE::otp_shared_secret:base32nopad$$\n"
    plat.create(f'name: otp-svc\nversion: "0.3.10"\n{_service(program, measurement, otp_line)}'
                f"secrets:\n  - name: otp_shared_secret\n    kind: binary\n"
                f"    value: {raw.hex()}\n" + _security())
    assert plat.run(f"otp-svc/app@{_now_otp(b'x' * 20)}").returncode == 3
    done = plat.run(f"otp-svc/app@{_now_otp(raw)}")
    assert done.returncode == 0, done.stderr


# --- service access tokens -------------------------------------------------------------


def test_a_service_without_its_access_token_is_refused(
    plat: Platform, program: Path, measurement: str
) -> None:
    token = "j765WyMWTKksiqWbBuuc"
    plat.create(f'name: token\nversion: "0.3.10"\n{_service(program, measurement)}'
                + _security() + f"  service_access_token: {token}\n")
    without = plat.run("token/app")
    assert without.returncode == 3 and "requires a service access token" in without.stderr
    wrong = plat.run("token/app", SCONE_SERVICE_ACCESS_TOKEN="guess")
    assert wrong.returncode == 3 and "service access token presented" in wrong.stderr
    assert "guess" not in wrong.stderr and token not in wrong.stderr
    right = plat.run("token/app", SCONE_SERVICE_ACCESS_TOKEN=token)
    assert right.returncode == 0, right.stderr
    audit = (plat.cas.state / "audit.log").read_text()
    assert token not in audit and "guess" not in audit


# --- config-fragments from another session ---------------------------------------------


def test_an_imported_fragment_is_the_services_attestation_and_access_policy(
    plat: Platform, program: Path, measurement: str
) -> None:
    plat.create(f"""\
name: central
version: "0.3.10"
secrets:
  - name: app_attestation
    kind: config-fragment
    export: [{{session: fragged}}, {{session: fragged-wrong}}]
    value:
      mrenclave: [{measurement}]
  - name: other_attestation
    kind: config-fragment
    export: {{session: fragged-wrong}}
    value:
      mrenclave: ["{'0' * 64}"]
  - name: shared_policy
    kind: config-fragment
    export: {{session: fragged}}
    value:
      read: [ANY]
      update: [CREATOR]
""")
    app = f"""\
name: NAME
version: "0.3.10"
access_policy: $$SCONE::policy$$
services:
  - name: app
    attestation: $$SCONE::att$$
    command: python3 {program}
secrets:
  - name: att
    kind: config-fragment
    import: {{session: central, secret: FRAGMENT}}
  - name: policy
    kind: config-fragment
    import: {{session: central, secret: shared_policy}}
""" + _security()
    plat.create(app.replace("NAME", "fragged").replace("FRAGMENT", "app_attestation"))
    done = plat.run("fragged/app")
    assert done.returncode == 0, done.stderr
    plat.create(app.replace("NAME", "fragged-wrong").replace("FRAGMENT", "other_attestation")
                .replace("access_policy: $$SCONE::policy$$\n", "")
                .replace("  - name: policy\n    kind: config-fragment\n    import: {session: "
                         "central, secret: shared_policy}\n", ""))
    refused = plat.run("fragged-wrong/app")
    assert refused.returncode == 3
    assert "attestation refused" in refused.stderr  # the caller learns no policy detail
    assert f"measurement {measurement} not in [000000000000…]" in plat.last_refusal()


# --- volumes shared between sessions ------------------------------------------------------


def test_a_volume_exported_and_imported_opens_with_the_exporters_key(
    plat: Platform, tmp_path: Path
) -> None:
    if shutil.which("gocryptfs") is None or not Path("/dev/fuse").exists():
        pytest.skip("encrypted volumes need gocryptfs and /dev/fuse: apt-get install "
                    "gocryptfs fuse3")
    sh = subprocess.run([CLOISTER, "measure", "sh"], capture_output=True, text=True,
                        check=True).stdout.strip()
    volume, out = tmp_path / "shared", tmp_path / "read.txt"

    def sess(name: str, script: str, volumes: str) -> str:
        return f"""\
name: {name}
version: "0.3.10"
services:
  - name: app
    image_name: img
    mrenclaves: [{sh}]
    command: ["sh", "-c", "{script}"]
images:
  - name: img
    volumes: [{{name: data, path: {volume}}}]
volumes:
{volumes}""" + _security()

    plat.create(sess("vol-exporter", f"echo shared-marker > {volume}/x",
                     "  - name: data\n    export: {session: vol-importer}\n"))
    plat.create(sess("vol-importer", f"cat {volume}/x > {out}",
                     "  - name: data\n    import: {session: vol-exporter, volume: data}\n"))
    try:
        wrote = plat.run("vol-exporter/app", "--", "sh")
        assert wrote.returncode == 0, wrote.stderr
        unmount(str(volume))
        read = plat.run("vol-importer/app", "--", "sh")
        assert read.returncode == 0, read.stderr
        assert out.read_text().strip() == "shared-marker"
    finally:
        unmount(str(volume))


def test_a_volume_import_without_an_export_is_refused_at_create(plat: Platform) -> None:
    plat.create('name: vol-private\nversion: "0.3.10"\nvolumes:\n  - name: data\n')
    reply = plat.cas.curl("/session", identity=plat.owner, data=(
        b'name: vol-thief2\nversion: "0.3.10"\nvolumes:\n  - name: data\n'
        b"    import: {session: vol-private, volume: data}\n"))
    assert reply.status == 422, reply.body
    assert b"does not export it to 'vol-thief2'" in reply.body


# --- singletons ----------------------------------------------------------------------------


def _start(plat: Platform, config_id: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([CLOISTER, "run"], env=plat.env(config_id), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "up", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def test_a_second_singleton_instance_is_refused_until_the_first_died(
    plat: Platform, tmp_path: Path, measurement: str
) -> None:
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(SLEEPER)
    plat.create(f'name: single\nversion: "0.3.10"\n{_service(sleeper, measurement)}'
                + _security() + "  singleton_enclaves: true\n")
    first = _start(plat, "single/app")
    try:
        time.sleep(LEASE_SECONDS * 1.5)  # the first renews: its lease outlives a lifetime
        second = plat.run("single/app")
        assert second.returncode == 3, second.stdout
        assert "another attested instance holds it" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: nothing is released, renewals stop
        first.wait(timeout=10)
    time.sleep(LEASE_SECONDS + 1)
    third = _start(plat, "single/app")
    (tmp_path / "stop").write_text("")  # a clean exit releases the lease at once
    assert third.wait(timeout=30) == 0
    (tmp_path / "stop").unlink()
    # the renewal endpoint extends a held lease only: nobody takes a free one without attesting
    taken = plat.cas.curl("/v1/attest/lease", data=b'{"config_id": "single/app", '
                          b'"lease": "not-the-holder"}')
    assert taken.status == 409, taken.body
    fourth = _start(plat, "single/app")
    fourth.send_signal(signal.SIGKILL)
    fourth.wait(timeout=10)


def test_a_native_singleton_loses_its_lease_when_the_program_dies(
    plat: Platform, tmp_path: Path
) -> None:
    sh = subprocess.run([CLOISTER, "measure", "sh"], capture_output=True, text=True,
                        check=True).stdout.strip()
    plat.create(f"""\
name: single-native
version: "0.3.10"
services:
  - name: app
    mrenclaves: [{sh}]
    command: ["sh", "-c", "echo up; sleep 60"]
""" + _security() + "  singleton_enclaves: true\n")
    first = subprocess.Popen([CLOISTER, "run", "--", "sh"], env=plat.env("single-native/app"),
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stdout is not None and first.stderr is not None
    line = first.stdout.readline()
    assert line.strip() == "up", (line, first.wait(timeout=10), first.stderr.read())
    second = plat.run("single-native/app", "--", "sh", timeout=30)
    assert second.returncode == 3 and "another attested instance holds it" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # the keeper sees the program's pid end and releases the lease without waiting for it
    deadline = time.time() + LEASE_SECONDS * 3
    while True:
        again = subprocess.Popen([CLOISTER, "run", "--", "sh"],
                                 env=plat.env("single-native/app"), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert again.stdout is not None
        if again.stdout.readline().strip() == "up":
            again.send_signal(signal.SIGKILL)
            again.wait(timeout=10)
            break
        again.wait(timeout=10)
        assert time.time() < deadline, "the lease of the dead program was never freed"
        time.sleep(0.3)
