"""``cloister run`` launches an unmodified Python program only after the CAS verified it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER
from run_harness import Platform, platform, python_measurement

from support import disk_state

PROGRAM = """\
import os, sys, pathlib
print("argv", sys.argv[1:])
print("token-len", len(os.environ["TOKEN"]))
print("greeting", os.environ["GREETING"])
with open("/tls/app.crt") as f:
    print("open", f.read().startswith("-----BEGIN CERTIFICATE-----"))
print("pathlib", pathlib.Path("/tls/app.key").read_text().startswith("-----BEGIN PRIVATE KEY"))
print("exists", os.path.exists("/tls/app.crt"), os.path.exists("/tls/none"))
print("cwd", os.getcwd())
pathlib.Path(os.environ["MARKER"]).write_text("ran")
sys.exit(7)
"""


def session(name: str, program: Path, measurement: str, *, tolerate: str = "[debug-mode]",
            platforms: str = "") -> str:
    return f"""\
name: {name}
version: "0.3"
services:
  - name: app
    image_name: img
    mrenclaves: [{measurement}]
    command: python3 {program} one "two words"
    environment:
      TOKEN: $$SCONE::token$$
      GREETING: hello
      MARKER: {program.parent}/ran
    pwd: {program.parent}
    {platforms}
images:
  - name: img
    injection_files:
      - path: /tls/app.crt
        content: $$SCONE::cert:crt$$
      - path: /tls/app.key
        content: $$SCONE::cert:privatekey$$
        permission: 0600
secrets:
  - name: token
    kind: ascii
  - name: key
    kind: private-key
  - name: cert
    kind: x509
    private_key: key
    dns: [app]
security:
  attestation:
    tolerate: {tolerate}
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("run")) as p:
        yield p


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(PROGRAM)
    return path


def test_python_program_gets_its_configuration_in_memory(plat: Platform, program: Path) -> None:
    plat.create(session("ok", program, python_measurement()))
    tls_before = disk_state("/tls")
    done = plat.run("ok/app")
    assert done.returncode == 7, done.stderr
    assert done.stdout.splitlines() == [
        "argv ['one', 'two words']",
        "token-len 20",
        "greeting hello",
        "open True",
        "pathlib True",
        "exists True False",
        f"cwd {program.parent}",
    ]
    assert disk_state("/tls") == tls_before, "injected files of the program reached the disk"
    assert (program.parent / "ran").read_text() == "ran"


def test_global_flags_before_run_survive_the_isolated_restart(plat: Platform,
                                                               program: Path) -> None:
    """`cloister --verbose run --las …`: the runtime restarts as `python -I -m cloister.cli
    run …`, the only Python command line the LAS quotes for, flags kept."""
    plat.create(session("global-flags", program, python_measurement()))
    env = plat.env("global-flags/app")
    las = env.pop("CLOISTER_LAS_ADDR")
    done = subprocess.run([CLOISTER, "--verbose", "run", "--las", las], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert "token-len 20" in done.stdout.splitlines()
    assert "DEBUG" in done.stderr  # --verbose reached the restarted runtime


def refused(plat: Platform, program: Path, config_id: str, *reasons: str) -> None:
    done = plat.run(config_id)
    assert done.returncode == 3, (done.stdout, done.stderr)
    # the workload hears one uniform refusal; the CAS's audit log has every reason
    assert "attestation refused" in done.stderr
    audited = plat.last_refusal()
    for reason in reasons:
        assert reason in audited
        assert reason not in done.stderr or reason == "measurement"
    assert "Traceback" not in done.stderr
    assert not (program.parent / "ran").exists(), "the program ran despite a refusal"


def test_a_pinned_leaf_certificate_works_for_run_too(plat: Platform, program: Path) -> None:
    """Pinning the CAS's server certificate (not its CA) works as for ``cloister session``."""
    plat.create(session("leafpin", program, python_measurement()))
    leaf = plat.cas.state / "cas-server.pem"
    done = plat.run("leafpin/app", CLOISTER_CAS_CERT=str(leaf))
    assert done.returncode == 7, done.stderr  # the program ran (and exited with its own 7)
    assert "greeting hello" in done.stdout
    # and a certificate that is not the CAS's is refused
    wrong = plat.run("leafpin/app", CLOISTER_CAS_CERT=str(plat.owner.cert))
    assert wrong.returncode == 5 and "does not match the pinned certificate" in wrong.stderr
    assert "greeting" not in wrong.stdout


def test_run_takes_cas_cas_cert_and_las_flags(plat: Platform, program: Path) -> None:
    """``cloister run --cas … --cas-cert … --las …``: the flags alone configure it."""
    plat.create(session("flags", program, python_measurement()))
    env = {k: v for k, v in plat.env("flags/app").items()
           if k not in ("CLOISTER_CAS_ADDR", "CLOISTER_CAS_CERT", "CLOISTER_LAS_ADDR")}
    flags = ["--cas", f"127.0.0.1:{plat.cas.port}", "--cas-cert",
             str(plat.cas.state / "cas-ca.pem"), "--las", plat.las.addr]
    done = subprocess.run([CLOISTER, "run", *flags], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 7, done.stderr
    assert "greeting hello" in done.stdout
    # a flag wins over the environment
    env["CLOISTER_CAS_ADDR"] = "127.0.0.1:1"
    again = subprocess.run([CLOISTER, "run", *flags], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 7, again.stderr


def test_unlisted_measurement_is_refused(plat: Platform, program: Path) -> None:
    plat.create(session("wrong-m", program, "c" * 64))
    refused(plat, program, "wrong-m/app",
            "measurement", "not in [cccccccccccc", "add it to mrenclaves")


def test_simulation_without_debug_mode_is_refused(plat: Platform, program: Path) -> None:
    plat.create(session("no-debug", program, python_measurement(), tolerate="[]"))
    refused(plat, program, "no-debug/app",
            "evidence type simulation not tolerated: add debug-mode to "
            "security.attestation.tolerate")


def test_unlisted_platform_is_refused(plat: Platform, program: Path) -> None:
    text = session("other-platform", program, python_measurement(),
                   platforms=f"platforms: [{'d' * 64}]")
    plat.create(text)
    refused(plat, program, "other-platform/app", f"platform {plat.las.platform_id()} not in")


def test_all_reasons_at_once(plat: Platform, program: Path) -> None:
    plat.create(session("two-reasons", program, "e" * 64, tolerate="[]"))
    refused(plat, program, "two-reasons/app", "not in [eeeeeeeeeeee", "debug-mode")


def test_unknown_session_and_service_are_refused(plat: Platform, program: Path) -> None:
    # the anonymous caller learns only that the id is unknown; the audit log keeps why
    refused(plat, program, "no-such-session/app", "config id is not known to this CAS")
    unknown = plat.run("no-such-session/app").stderr
    plat.create(session("has-app", program, python_measurement()))
    refused(plat, program, "has-app/other", "config id is not known to this CAS")
    # (g) an unknown session and a known one the caller may not have: the same answer
    assert plat.run("has-app/other").stderr == unknown
    audit = "".join(p.read_text() for p in plat.cas.state.glob("audit*"))
    assert "session 'no-such-session' does not exist" in audit
    assert "session 'has-app' has no service 'other'" in audit


def test_refusals_are_audited(plat: Platform, program: Path) -> None:
    plat.create(session("audited", program, "f" * 64))
    plat.run("audited/app")
    audit = (plat.cas.state / "audit.log").read_text() if (plat.cas.state / "audit.log").exists() \
        else "".join(p.read_text() for p in plat.cas.state.glob("audit*"))
    assert '"session": "audited"' in audit or '"session":"audited"' in audit
    assert "not in [ffffffffffff" in audit


def test_unreachable_cas_fails_clearly_after_bounded_retries(plat: Platform, program: Path,
                                                              tmp_path: Path) -> None:
    done = plat.run("x/app", CLOISTER_CAS_ADDR="127.0.0.1:1", CLOISTER_RETRY_SECONDS="1")
    assert done.returncode == 5
    assert "the CAS at 127.0.0.1:1 refused the connection" in done.stderr
    assert "gave up after 1s of retries, CLOISTER_RETRY_SECONDS=1" in done.stderr


def test_a_failing_program_shows_its_own_traceback_like_python(plat: Platform,
                                                                tmp_path: Path) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("def handler():\n    raise ValueError('program bug')\n\nhandler()\n")
    plat.create(session("crashes", crash, python_measurement()).replace(
        f"command: python3 {crash} one \"two words\"", f"command: python3 {crash}"))
    done = plat.run("crashes/app")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: program bug" in done.stderr
    assert "raise ValueError('program bug')" in done.stderr


def test_a_missing_script_is_a_launch_error(plat: Platform, tmp_path: Path) -> None:
    missing = tmp_path / "missing.py"
    plat.create(session("no-script", missing, python_measurement()))
    done = plat.run("no-script/app")
    assert done.returncode == 6, done.stderr
    assert f"the policy's command runs {missing}, which does not exist here" in done.stderr
    assert "Traceback" not in done.stderr
