"""Attacks on attestation, run as an attacker would, each failing for its stated reason.

(a) forged evidence from anywhere, (b) any local user as any workload, (c) same-user
memory, (d) code injection with an unchanged measurement, (e) leftovers of native
injected files, (g) what anonymous callers learn.  (a) against the real demo is in
``tests/e2e/test_demo_e2e.py``, (f) in ``tests/unit/fspf/test_fspf_seal_run.py`` and
``tests/integration/test_run_sealed.py``.

Attackers run as uid 65534 (``setpriv``), from a network namespace the test creates,
as a second process of the workload's own user, or with the environment of the host.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fault_harness import INTEGRATION

from run_harness import Platform, platform, python_measurement  # isort: skip

from cloister.attest import generate_ephemeral_key, public_key_bytes_of, report_data
from cloister.attest.simulation import sign_simulation
from support import every_uid_python

assert INTEGRATION.is_dir()  # fault_harness put the integration harness on sys.path
NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")

PROGRAM = """\
import os, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
(out / "secret").write_text(os.environ["TOKEN"])
(out / "pid").write_text(str(os.getpid()))
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def session(name: str, command: str, *, measurement: str | None = None,
            uid: int | None = None, inject: str | None = None) -> str:
    lines = [f"name: {name}", 'version: "0.3"', "services:", "  - name: app",
             f"    mrenclaves: [{measurement or python_measurement()}]",
             f"    command: {command}", "    environment:", "      TOKEN: $$SCONE::token$$"]
    if uid is not None:
        lines += [f"    uid: {uid}"]
    if inject is not None:
        lines += ["    image_name: img", "images:", "  - name: img", "    injection_files:",
                  f"      - path: {inject}", "        content: $$SCONE::token$$"]
    lines += ["secrets:", "  - name: token", "    kind: ascii",
              "security:", "  attestation:", "    tolerate: [debug-mode]", ""]
    return "\n".join(lines)


def need_root() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("attacks as another uid need root and setpriv (util-linux)")


@pytest.fixture(scope="module")
def public() -> Iterator[Path]:
    """A directory every user may read (the LAS socket, the CAS cert, the programs)."""
    path = Path(tempfile.mkdtemp(prefix="cloister-attacks-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def other_python(public: Path) -> tuple[str, str]:
    """(interpreter, its measurement): a Python every uid can run, with this cloister."""
    python = every_uid_python(public / "venv")
    measured = subprocess.run([python, "-m", "cloister.cli", "measure"], capture_output=True,
                              text=True, check=True).stdout.strip()
    return python, measured


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory, public: Path) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("caller-attacks"), public=public) as p:
        yield p


@pytest.fixture
def outdir(public: Path) -> Iterator[Path]:
    """A directory the workload (whatever its uid) writes its results to."""
    path = Path(tempfile.mkdtemp(dir=public))
    path.chmod(0o777)
    (path / "app.py").write_text(PROGRAM)
    (path / "app.py").chmod(0o644)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(plat: Platform, config_id: str, *command: str, prefix: tuple[str, ...] = (),
        python: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    cloister = [python, "-m", "cloister.cli"] if python else [
        str(Path(sys.executable).parent / "cloister")]
    return subprocess.run([*prefix, *cloister, "run", *command],
                          env=plat.env(config_id, **extra), capture_output=True, text=True,
                          timeout=120)


def attest(plat: Platform, config_id: str, evidence: bytes, nonce: bytes,
           key: bytes) -> tuple[int, bytes]:
    """POST /v1/attest/config with curl, as any client could: (status, raw body)."""
    body = json.dumps({"config_id": config_id, "nonce": nonce.hex(), "public_key": key.hex(),
                       "evidence": base64.b64encode(evidence).decode()}).encode()
    reply = plat.cas.curl("/v1/attest/config", data=body)
    return reply.status, reply.body


def fresh_nonce(plat: Platform) -> bytes:
    reply = plat.cas.curl("/v1/attest/nonce", data=b"{}")
    return bytes.fromhex(reply.json()["nonce"])


# --- (a) forged evidence --------------------------------------------------------------------


def _netns_available() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "network namespaces need root and iproute2"
    probe = f"cloister-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns add failed here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (name, host address)."""
    why = _netns_available()
    if why is not None:
        print(f"skipping: {why}")
        pytest.skip(why)
    tag = f"{os.getpid() % 10000}"
    name, outer, inner = f"cl-att-{tag}", f"cla{tag}", f"clb{tag}"
    subnet = 10 + os.getpid() % 200
    host, guest = f"10.{subnet}.77.1", f"10.{subnet}.77.2"
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
             ["ip", "link", "set", inner, "netns", name],
             ["ip", "addr", "add", f"{host}/30", "dev", outer], ["ip", "link", "set", outer, "up"],
             ["ip", "netns", "exec", name, "ip", "addr", "add", f"{guest}/30", "dev", inner],
             ["ip", "netns", "exec", name, "ip", "link", "set", inner, "up"],
             ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"skipping: {' '.join(step)} failed: {done.stderr.strip()}")
                pytest.skip(f"cannot build a network namespace here: {done.stderr.strip()}")
        yield name, host
    finally:
        subprocess.run(["ip", "link", "delete", outer], capture_output=True)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_a_evidence_signed_by_an_unknown_key_from_another_network_is_refused(
        tmp_path: Path, netns: tuple[str, str]) -> None:
    """A client with no LAS signs its own simulation evidence claiming the service's
    (public) measurement and sends it through a non-loopback address: not enrolled."""
    name, host = netns
    with platform(tmp_path / "open-cas") as plat:
        # a CAS on every interface, as `cloister cas serve` is by default
        plat.cas.stop()
        plat.cas.extra_args = ("--listen", f"0.0.0.0:{plat.cas.port}")
        plat.cas.start()
        plat.create(session("victim", "python3 /nonexistent.py"))
        cacert = plat.cas.state / "cas-ca.pem"
        base = ["ip", "netns", "exec", name, "curl", "-sS", "--cacert", str(cacert),
                "--resolve", f"localhost:{plat.cas.port}:{host}"]
        url = f"https://localhost:{plat.cas.port}"
        got = subprocess.run([*base, "-X", "POST", "-d", "{}", f"{url}/v1/attest/nonce"],
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        nonce = bytes.fromhex(json.loads(got.stdout)["nonce"])
        key = public_key_bytes_of(generate_ephemeral_key())
        forged = sign_simulation(Ed25519PrivateKey.generate(), measurement=python_measurement(),
                                 fspf_tag=None, report_data_hex=report_data(nonce, key).hex(),
                                 uid=0, gid=0)
        body = json.dumps({"config_id": "victim/app", "nonce": nonce.hex(),
                           "public_key": key.hex(),
                           "evidence": base64.b64encode(forged).decode()})
        sent = subprocess.run([*base, "-w", "\n%{http_code}", "-H",
                               "Content-Type: application/json", "-d", body,
                               f"{url}/v1/attest/config"],
                              capture_output=True, text=True, timeout=60)
        answer, _, status = sent.stdout.rpartition("\n")
        assert status == "403", sent.stdout + sent.stderr
        assert "sealed_config" not in answer
        assert json.loads(answer)["error"]["message"] == "attestation refused"
        assert "is not enrolled: simulation evidence counts only from a quoting key the CAS " \
            "knows" in plat.last_refusal()


# --- (b) another local user --------------------------------------------------------------


def test_b_another_uid_asking_the_las_gets_evidence_of_itself_which_is_refused(
        plat: Platform, public: Path) -> None:
    need_root()
    plat.create(session("b-victim", "python3 /nonexistent.py", uid=os.getuid()))
    nonce, key = fresh_nonce(plat), public_key_bytes_of(generate_ephemeral_key())
    # the attacker asks for a quote "of the victim's measurement": the LAS measures the caller
    request = json.dumps({"report_data": report_data(nonce, key).hex(),
                          "measurement": python_measurement()})
    asked = subprocess.run([*AS_NOBODY, "curl", "-sS", "--unix-socket", plat.las.addr, "-H",
                            "Content-Type: application/json", "-d", request,
                            "http://las/v1/quote"], capture_output=True, text=True, timeout=60)
    assert "a caller cannot choose its measurement" in asked.stdout
    request = json.dumps({"report_data": report_data(nonce, key).hex()})
    asked = subprocess.run([*AS_NOBODY, "curl", "-sS", "--unix-socket", plat.las.addr, "-H",
                            "Content-Type: application/json", "-d", request,
                            "http://las/v1/quote"], capture_output=True, text=True, timeout=60)
    quote = json.loads(asked.stdout)
    assert (quote["uid"], quote["gid"]) == (NOBODY, NOBODY)  # its own uid, its own program
    assert quote["measurement"] != python_measurement()
    status, body = attest(plat, "b-victim/app", base64.b64decode(quote["evidence"]), nonce, key)
    assert status == 403 and b"sealed_config" not in body
    reasons = plat.last_refusal()
    assert f"the caller runs as uid {NOBODY}, service app requires uid {os.getuid()}" in reasons
    assert f"measurement {quote['measurement']} not in" in reasons


def test_b_genuine_cloister_run_as_another_uid_is_refused(
        plat: Platform, outdir: Path, other_python: tuple[str, str]) -> None:
    need_root()
    python, measured = other_python
    plat.create(session("b-pinned", f"python3 {outdir}/app.py {outdir}", uid=os.getuid(),
                        measurement=measured))
    done = run(plat, "b-pinned/app", prefix=AS_NOBODY, python=python)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "attestation refused" in done.stderr
    assert f"the caller runs as uid {NOBODY}, service app requires uid {os.getuid()}" in \
        plat.last_refusal()
    assert not (outdir / "secret").exists(), "the program ran and got the secret"


# --- (c) the workload's own user ----------------------------------------------------------


_PTRACE_SEIZE = 0x4206


def test_c_same_uid_cannot_read_ptrace_or_see_the_environ_of_a_python_workload(
        plat: Platform, outdir: Path, other_python: tuple[str, str]) -> None:
    need_root()
    python, measured = other_python
    plat.create(session("c-mem", f"python3 {outdir}/app.py {outdir} 60", uid=NOBODY,
                        measurement=measured))
    proc = subprocess.Popen([*AS_NOBODY, python, "-m", "cloister.cli", "run"],
                            env=plat.env("c-mem/app"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (outdir / "pid").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the workload did not start"
            time.sleep(0.1)
        pid = int((outdir / "pid").read_text())
        secret = (outdir / "secret").read_text()
        probe = textwrap.dedent(f"""
            import ctypes, json
            out = {{}}
            for name in ("mem", "environ", "maps"):
                try:
                    with open("/proc/{pid}/" + name, "rb") as f:
                        data = f.read(1 << 16) if name != "mem" else b""
                        out[name] = "read" if {secret!r}.encode() not in data else "SECRET"
                except OSError as err:
                    out[name] = err.strerror
            libc = ctypes.CDLL(None, use_errno=True)
            ok = libc.ptrace({_PTRACE_SEIZE}, {pid}, None, None)
            out["ptrace"] = "attached" if ok == 0 else __import__("os").strerror(ctypes.get_errno())
            print(json.dumps(out))
        """)
        attacker = subprocess.run([*AS_NOBODY, python, "-c", probe],
                                  capture_output=True, text=True, timeout=60)
        seen = json.loads(attacker.stdout)
        # PR_SET_DUMPABLE is cleared: the kernel refuses the same uid all of it
        assert seen == {"mem": "Permission denied", "environ": "Permission denied",
                        "maps": "Permission denied", "ptrace": "Operation not permitted"}, seen
    finally:
        proc.kill()
        proc.communicate()


# --- (d) code injection with an unchanged measurement ------------------------------------


def test_d_pythonpath_sitecustomize_never_sees_the_secret(plat: Platform, outdir: Path,
                                                         tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    capture = tmp_path / "captured"
    (evil / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import atexit, os, sys
        def grab():
            with open({str(capture)!r}, "a") as f:
                f.write(repr(dict(os.environ)) + repr(sys.argv) + "\\n")
        atexit.register(grab)
        grab()
        if os.environ.get("EVIL_KEEP_PROCESS"):
            # stay in this process instead of the isolated restart
            import cloister.cli._isolated as iso
            iso.reexec_isolated = lambda args: None
    """))
    plat.create(session("d-site", f"python3 {outdir}/app.py {outdir}"))
    done = run(plat, "d-site/app", PYTHONPATH=str(evil))
    # the code ran before the isolated restart, where no secret exists; it did not follow
    assert done.returncode == 0, done.stderr
    secret = (outdir / "secret").read_text()
    assert capture.exists() and secret not in capture.read_text()
    (outdir / "secret").unlink()
    # the attacker keeps its code in the measured process: the LAS refuses it
    done = run(plat, "d-site/app", PYTHONPATH=str(evil), EVIL_KEEP_PROCESS="1")
    assert done.returncode != 0
    assert "its environment sets PYTHONPATH" in done.stderr
    assert "not `python -I -m cloister.cli run`" in done.stderr
    assert not (outdir / "secret").exists(), "the program ran"
    assert secret not in capture.read_text()


def test_d_ld_preload_of_a_library_is_refused(plat: Platform, outdir: Path,
                                              tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the library to preload")
    marker = tmp_path / "preloaded"
    source = tmp_path / "evil.c"
    source.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        __attribute__((constructor)) static void evil(void) {{
            FILE *f = fopen("{marker}", "a");
            if (f) {{ fputs("loaded\\n", f); fclose(f); }}
        }}
    """))
    library = tmp_path / "libevil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    plat.create(session("d-preload", f"python3 {outdir}/app.py {outdir}"))
    done = run(plat, "d-preload/app", LD_PRELOAD=str(library))
    assert marker.exists(), "the library was not even loaded: the test proves nothing"
    assert done.returncode != 0
    assert "its environment sets LD_PRELOAD, which loads foreign code" in done.stderr
    assert not (outdir / "secret").exists(), "the program ran"


# --- (e) leftovers of native injected files ----------------------------------------------


def _run_dirs() -> set[Path]:
    return set(Path("/dev/shm").glob(f"cloister-run-{os.geteuid()}-*"))


def test_e_no_injected_file_outlives_a_native_program_or_a_kill_9(
        plat: Platform, outdir: Path) -> None:
    policy_dir = Path("/dev/shm") / f"cloister-e-{os.getpid()}"
    measured = subprocess.run([str(Path(sys.executable).parent / "cloister"), "measure",
                               "sleep"], capture_output=True, text=True, check=True).stdout.strip()
    plat.create(session("e-native", "sleep 60", measurement=measured,
                        inject=f"{policy_dir}/token"))
    before = _run_dirs()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "cloister"), "run", "--",
                             "sleep"], env=plat.env("e-native/app"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        token = policy_dir.relative_to("/") / "token"

        def ours() -> list[Path]:  # tests running in parallel have run directories too
            return [d for d in _run_dirs() - before if (d / token).exists()]

        while not ours():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run directory never appeared"
            time.sleep(0.1)
        (left,) = ours()
        assert oct(left.stat().st_mode & 0o777) == "0o700"
        os.kill(proc.pid, signal.SIGKILL)  # the runtime dies; its program follows it
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not left.exists():  # nobody of this run could remove it: kill -9
        print(f"{left} was removed by a start of another test as this uid (what the next "
              "start does)")
    # the next start removes it (here a start whose attestation is refused)
    plat.create(session("e-other", "sleep 1", measurement="0" * 64, inject="/x/token"))
    run(plat, "e-other/app", "--", "sleep")
    assert not left.exists(), "the leftover of a kill -9 survived the next start"
    assert not policy_dir.exists(), "the policy's path was used"


def test_e_a_directory_pre_created_by_another_user_neither_blocks_nor_redirects(
        plat: Platform, outdir: Path, tmp_path: Path) -> None:
    need_root()
    trap = Path("/dev/shm") / f"cloister-trap-{os.getpid()}"
    stolen = Path(tempfile.mkdtemp(dir=outdir))
    Path(stolen).chmod(0o777)
    # the attacker makes the policy's directory and a link where the key would go
    subprocess.run([*AS_NOBODY, "mkdir", "-m", "0777", str(trap)], check=True)
    subprocess.run([*AS_NOBODY, "ln", "-s", f"{stolen}/token", f"{trap}/token"], check=True)
    # and directories named like run directories of ours
    fake = Path("/dev/shm") / f"cloister-run-{os.geteuid()}-{'0' * 32}"
    subprocess.run([*AS_NOBODY, "mkdir", "-m", "0777", str(fake)], check=True)
    try:
        measured = subprocess.run([str(Path(sys.executable).parent / "cloister"), "measure",
                                   "cp"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        plat.create(session("e-trap", f"cp {trap}/token {outdir}/copied", measurement=measured,
                            inject=f"{trap}/token"))
        done = run(plat, "e-trap/app", "--", "cp")
        assert done.returncode == 0, done.stderr  # not blocked
        assert len((outdir / "copied").read_text()) == 20
        assert not (stolen / "token").exists(), "the key was written through the link"
        assert fake.exists(), "another user's directory was removed"
    finally:
        shutil.rmtree(trap, ignore_errors=True)
        shutil.rmtree(fake, ignore_errors=True)


# --- (g) what an anonymous caller learns ---------------------------------------------------


def test_g_unknown_and_known_sessions_get_byte_identical_answers(plat: Platform) -> None:
    plat.create(session("g-known", "python3 /nonexistent.py"))
    answers = {}
    for name in ("g-known", "g-unknown"):
        nonce, key = fresh_nonce(plat), public_key_bytes_of(generate_ephemeral_key())
        forged = sign_simulation(Ed25519PrivateKey.generate(), measurement="ab" * 32,
                                 fspf_tag=None, report_data_hex=report_data(nonce, key).hex(),
                                 uid=0, gid=0)
        body = json.dumps({"config_id": f"{name}/app", "nonce": nonce.hex(),
                           "public_key": key.hex(),
                           "evidence": base64.b64encode(forged).decode()}).encode()
        refused = plat.cas.curl("/v1/attest/config", data=body, extra=("-i",))
        values = plat.cas.curl(f"/v1/values/session={name}", extra=("-i",))
        one = plat.cas.curl(f"/v1/values/session={name},secret=token", extra=("-i",))
        answers[name] = [_without_date(r.body) for r in (refused, values, one)]
        assert (refused.status, values.status, one.status) == (403, 200, 403)
    assert answers["g-known"] == answers["g-unknown"]
    assert b"not in" not in answers["g-known"][0]  # no measurement, pins or tolerations
    audit = (plat.cas.state / "audit.log").read_text()
    assert "session 'g-unknown' does not exist" in audit
    assert "measurement abababababab" in audit


def _without_date(raw: bytes) -> bytes:
    return b"\n".join(line for line in raw.split(b"\n") if not line.lower().startswith(b"date:"))
