"""Secret-leak sweep after an end-to-end run of the patient API + Redis under ``cloister run``.

The flask session has an ascii and a binary secret (in the environment and an injected
file) and private keys; a patient with a planted SSN is stored.  Afterwards none of these
may appear in: any log, any file of the CAS state directory (the store itself included —
its values must be encrypted), any file under /tmp or /dev/shm written during the test,
or ``/proc/<pid>/environ`` of any process other than the two attested workloads.

The needles are the values the CAS released (its store opened in-process with its master
key, as the CAS does); that these are the values the workload got is shown by the API's
served certificate being the stored one.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from fault_stack import Stack, shm_dir

from run_harness import platform  # isort: skip

from cloister.cas import ServerConfig, open_store
from cloister.runtime._volumes import CIPHER_SUFFIX
from cloister.secrets import SecretValue

MAX_SCAN = 64 << 20


def _needles(value: SecretValue) -> dict[bytes, str]:
    """Every plaintext form of a value's secret parts (never its public certificate)."""
    out: dict[bytes, str] = {}
    if value.text is not None:
        out[value.text.encode()] = "ascii"
    if value.data is not None:
        for form in (value.data, value.data.hex().encode(), base64.b64encode(value.data)):
            out[form] = "binary"
    if value.key_pem is not None:
        body = [ln for ln in value.key_pem.splitlines() if ln and not ln.startswith("-----")]
        for line in body:
            if len(line) >= 16:
                out[line.encode()] = "private key (PEM line)"
        out[base64.b64decode("".join(body))] = "private key (DER)"
    return out


def _released(state: Path) -> tuple[dict[bytes, str], dict[str, SecretValue]]:
    store = open_store(ServerConfig(state=state))
    needles: dict[bytes, str] = {}
    values: dict[str, SecretValue] = {}
    try:
        for session in ("fault-redis", "fault-flask"):
            record = store.current(session)
            assert record is not None
            for name, blob in store.secrets(session, record.hash).items():
                value = SecretValue.from_bytes(blob)
                values[f"{session}/{name}"] = value
                needles.update({k: f"{session}/{name} {v}" for k, v in _needles(value).items()})
    finally:
        store.close()
    return needles, values


def _files_under(root: Path, since: float, skip: tuple[Path, ...]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not any(here / d == s for s in skip)]
        for name in filenames:
            path = here / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.is_symlink() and st.st_mtime >= since \
                    and st.st_size <= MAX_SCAN:
                found.append(path)
    return found


def _scan(paths: list[Path], needles: dict[bytes, str]) -> list[str]:
    hits = []
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError:
            continue  # gone meanwhile (another test's temporary file)
        hits += [f"{what} in {path}" for needle, what in needles.items() if needle in content]
    return hits


def test_no_secret_or_patient_field_leaks_anywhere(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if not any(Path(d, "redis-server").exists() for d in ("/usr/bin", "/usr/local/bin")):
        pytest.skip("redis-server not installed: apt-get install redis-server redis-tools")
    since = time.time() - 1
    root = tmp_path_factory.mktemp("leak-sweep")
    ssn = f"SSN-PLANTED-{secrets.token_hex(8)}"
    with platform(root) as plat:
        stack = Stack(plat, root, shm_dir(root))
        try:
            stack.create_sessions()
            stack.start("redis")
            stack.start("api")
            stack.wait_ready()
            status, posted = stack.post_patient("leak-1", ssn=ssn)
            assert status == 201 and posted["ssn"] == ssn
            assert stack.curl(stack.url("/patient/leak-1")) == (200, posted)
            assert stack.curl(stack.url("/score/leak-1"))[0] == 200
            assert stack.curl(stack.url("/patient/nobody"))[0] == 404  # an error path too

            needles, values = _released(plat.cas.state)
            served = subprocess.run(
                f"openssl s_client -connect 127.0.0.1:{stack.api_port} </dev/null 2>/dev/null"
                " | openssl x509", shell=True, capture_output=True, text=True).stdout
            assert x509.load_pem_x509_certificate(served.encode()) == \
                x509.load_pem_x509_certificate(
                    (values["fault-flask/flask"].cert_pem or "").encode())
            kinds = set(needles.values())
            assert any("ascii" in k for k in kinds) and any("binary" in k for k in kinds)
            assert sum("private key" in k for k in kinds) >= 10
            needles[ssn.encode()] = "planted patient SSN"

            workloads = {stack.procs["api"].pid, stack.procs["redis"].pid}
            hits: list[str] = []
            # the environment of every process but the two attested workloads
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit() or int(proc.name) in workloads:
                    continue
                try:
                    environ = (proc / "environ").read_bytes()
                except OSError:
                    continue
                hits += [f"{what} in /proc/{proc.name}/environ ({_comm(proc)})"
                         for needle, what in needles.items() if needle in environ]
        finally:
            stack.stop()
    # logs, state files (the store included: encrypted), /tmp and /dev/shm files of this run,
    # and Redis's data as it is on disk: the encrypted volume (the mount is gone by now)
    state_files = [p for p in plat.cas.state.rglob("*") if p.is_file()]
    volume = [p for p in Path(str(stack.data) + CIPHER_SUFFIX).rglob("*") if p.is_file()]
    assert volume, "Redis stored nothing in its encrypted volume"
    assert not any(stack.data.iterdir()), "plaintext left where the volume was mounted"
    state_files += volume
    assert any(p.name == "cas.db" for p in state_files)
    logs = list(root.glob("*.log"))
    assert {p.name for p in logs} >= {"cas.log", "las.log", "api.log", "redis.log"}
    recent = _files_under(Path("/tmp"), since, skip=(stack.data,)) + \
        _files_under(Path("/dev/shm"), since, skip=())
    assert any(p in recent for p in logs)  # the sweep does look where the logs are
    hits += _scan(sorted(set(state_files + logs + recent)), needles)
    assert hits == [], "\n".join(hits[:20])


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return "?"
