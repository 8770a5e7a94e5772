"""``cloister transform`` on a second app (tests/data/notes_app, not the patient service):
the bundle's policy passes ``cloister session check``, ``--cas`` creates the session,
and the bundle runs under ``cloister run`` against a test CAS + LAS and answers over
TLS verified with the CA the CAS publishes. The fspf key is only in the policy file."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cas_harness import CLOISTER, free_port
from run_harness import Platform, platform

NOTES_APP = Path(__file__).resolve().parents[1] / "data" / "notes_app"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("transform")
    out, port = root / "bundle", free_port()
    with platform(root) as plat:
        env = plat.env("notes/notes", CLOISTER_HOME=str(root / "owner"))
        done = subprocess.run(
            [CLOISTER, "transform", str(NOTES_APP), "--entry", "app.py", "--name", "notes",
             "--out", str(out), "--app-path", str(out / "app"),
             "--inject", "/tls/notes.crt=notes_tls:crt",
             "--inject", "/tls/notes.key=notes_tls:privatekey",
             "--inject", "/run/notes/signing-key=signing_key",
             "--env", f"PORT={port}", "--cas", env["CLOISTER_CAS_ADDR"]],
            capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        # the session's owner vouches for the LAS its simulation evidence comes from
        enrolled = subprocess.run(
            [CLOISTER, "platform", "enroll", "--las", plat.las.addr, "--label", "test node",
             "--cas", env["CLOISTER_CAS_ADDR"]], capture_output=True, text=True, env=env,
            timeout=60)
        assert enrolled.returncode == 0, enrolled.stderr
        assert enrolled.stdout.startswith(f"{plat.las.platform_id()} enrolled for sessions")
        listed = subprocess.run([CLOISTER, "platform", "list", "--cas", env["CLOISTER_CAS_ADDR"]],
                                capture_output=True, text=True, env=env, timeout=60)
        assert listed.stdout == f"{plat.las.platform_id()} test node\n", listed.stderr
        yield {"plat": plat, "out": out, "port": port, "stdout": done.stdout,
               "stderr": done.stderr, "root": root}


def fspf_key(out: Path) -> str:
    policy = yaml.safe_load((out / "policy/session.yml").read_text())
    return str(policy["services"][0]["fspf_key"])


def test_bundle_layout_and_key_only_in_the_policy(bundle: dict[str, object]) -> None:
    out = Path(str(bundle["out"]))
    for rel in ("app/fspf.pb", "app/app.py", "app/notes_store.py", "policy/session.yml",
                "Dockerfile", ".dockerignore", "requirements.txt", "compose-service.yml",
                "helm-values.yaml"):
        assert (out / rel).exists(), rel
    policy = out / "policy/session.yml"
    assert stat.S_IMODE(policy.stat().st_mode) == 0o600
    key = fspf_key(out)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    holders = [p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and key.encode() in p.read_bytes()]
    assert holders == ["policy/session.yml"]
    assert key not in str(bundle["stdout"]) + str(bundle["stderr"])
    assert "policy/session.yml (mode 0600)" in str(bundle["stderr"])  # a notice: stderr
    # the code is sealed: no plaintext of the source in the bundle
    assert b"hmac.new" not in (out / "app/app.py").read_bytes()
    assert "policy/" in (out / ".dockerignore").read_text().split()


def test_generated_policy_passes_session_check(bundle: dict[str, object]) -> None:
    out = Path(str(bundle["out"]))
    done = subprocess.run([CLOISTER, "session", "check", str(out / "policy/session.yml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("valid")
    text = (out / "policy/session.yml").read_text()
    assert "tolerate: [debug-mode]" in text and "simulation" in text


def test_generated_deployment_files(bundle: dict[str, object]) -> None:
    out = Path(str(bundle["out"]))
    svc = yaml.safe_load((out / "compose-service.yml").read_text())["services"]["notes"]
    assert svc["environment"]["CLOISTER_CONFIG_ID"] == "notes/notes"
    assert any(t.startswith("/run/notes:") for t in svc["tmpfs"])
    assert any(t.startswith("/tls:") for t in svc["tmpfs"])
    values = yaml.safe_load((out / "helm-values.yaml").read_text())
    assert values["scone"]["flask_session"] == "notes/notes"
    assert values["redis"]["enabled"] is False
    assert (out / "Dockerfile").read_text().count("COPY --chown=0:0 app ") == 1


def wait_for(url_args: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(["curl", "-sS", "--max-time", "5", *url_args],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return done
        if time.monotonic() > deadline:
            raise AssertionError(f"notes app never answered: {done.stderr} {log.read_text()}")
        time.sleep(0.2)


def test_bundle_runs_under_cloister_run_and_answers(bundle: dict[str, object]) -> None:
    plat = bundle["plat"]
    assert isinstance(plat, Platform)
    root, port = Path(str(bundle["root"])), int(str(bundle["port"]))
    ca = root / "notes-ca.pem"
    values = plat.cas.curl("/v1/values/session=notes", insecure=True).json()
    ca.write_text(values["values"]["notes_ca_cert"]["value"])
    log = root / "notes.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([CLOISTER, "run"], env=plat.env("notes/notes"),
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        base = ["--cacert", str(ca), "--resolve", f"notes:{port}:127.0.0.1"]
        url = f"https://notes:{port}/notes"
        posted = json.loads(wait_for([*base, "-X", "POST", url, "-d", "text=hello"], log).stdout)
        got = json.loads(wait_for([*base, f"{url}/{posted['id']}"], log).stdout)
        assert got == {"id": posted["id"], "text": "hello", "sig": posted["sig"]}
        assert re.fullmatch(r"[0-9a-f]{16}", got["sig"])
        # without the CA the certificate is not trusted: no -k anywhere
        plain = subprocess.run(["curl", "-sS", "--max-time", "5", "--resolve",
                                f"notes:{port}:127.0.0.1", url], capture_output=True, text=True)
        assert plain.returncode != 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # the signing key and TLS key were in memory only: nowhere under the bundle or root
    assert not any(p.name in {"signing-key", "notes.key"} for p in root.rglob("*"))
    assert not Path("/run/notes").exists() or not os.listdir("/run/notes")
