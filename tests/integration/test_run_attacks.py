"""Attacks on the attestation protocol fail: replay, key substitution, wrong service, disk paths."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from run_harness import CLOISTER, Platform, platform, python_measurement

from cloister import errors
from cloister.attest import generate_ephemeral_key, public_key_bytes_of
from cloister.client._transport import post_json

SESSION = """\
name: {name}
version: "0.3"
services:
  - name: app
    image_name: img
    mrenclaves: [{measurement}]
    command: {command}
images:
  - name: img
    injection_files:
      - path: {inject}
        content: $$SCONE::token$$
secrets:
  - name: token
    kind: ascii
security:
  attestation:
    tolerate: [debug-mode]
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("attacks")) as p:
        p.create(SESSION.format(name="victim", measurement=python_measurement(),
                                command="python3 /nonexistent.py", inject="/tls/token"))
        yield p


def measure(program: str) -> str:
    return subprocess.run([CLOISTER, "measure", program], capture_output=True, text=True,
                          check=True).stdout.strip()


def call(plat: Platform, path: str, body: dict[str, Any]) -> Any:
    pem = (plat.cas.state / "cas-ca.pem").read_text()
    return post_json("127.0.0.1", plat.cas.port, path, body, pem)


def evidence_for(plat: Platform, nonce: bytes, bound_key: bytes) -> bytes:
    return plat.sign_as_las(nonce, bound_key)


def request(config_id: str, nonce: bytes, key: bytes, evidence: bytes) -> dict[str, str]:
    return {"config_id": config_id, "nonce": nonce.hex(), "public_key": key.hex(),
            "evidence": base64.b64encode(evidence).decode()}


def test_honest_request_is_accepted_once_and_replay_is_refused(plat: Platform) -> None:
    key = public_key_bytes_of(generate_ephemeral_key())
    nonce = bytes.fromhex(call(plat, "/v1/attest/nonce", {})["nonce"])
    body = request("victim/app", nonce, key, evidence_for(plat, nonce, key))
    assert "sealed_config" in call(plat, "/v1/attest/config", body)
    with pytest.raises(errors.AttestationError) as replay:
        call(plat, "/v1/attest/config", body)
    assert replay.value.message.endswith("attestation refused")
    assert "nonce is unknown, expired or already used" in plat.last_refusal()


def test_made_up_nonce_is_refused(plat: Platform) -> None:
    key = public_key_bytes_of(generate_ephemeral_key())
    nonce = bytes(32)
    with pytest.raises(errors.AttestationError):
        call(plat, "/v1/attest/config", request("victim/app", nonce, key,
                                                evidence_for(plat, nonce, key)))
    assert "nonce is unknown" in plat.last_refusal()


def test_evidence_bound_to_another_key_is_refused(plat: Platform) -> None:
    """An attacker replaces the public key to read the config: the binding fails."""
    honest = public_key_bytes_of(generate_ephemeral_key())
    attacker = public_key_bytes_of(generate_ephemeral_key())
    nonce = bytes.fromhex(call(plat, "/v1/attest/nonce", {})["nonce"])
    with pytest.raises(errors.AttestationError):
        call(plat, "/v1/attest/config", request("victim/app", nonce, attacker,
                                                evidence_for(plat, nonce, honest)))
    assert "bound to another key or nonce" in plat.last_refusal()


def test_config_id_of_another_session_is_refused(plat: Platform) -> None:
    """Evidence good for victim/app does not open a session whose measurement differs."""
    plat.create(SESSION.format(name="other", measurement="9" * 64,
                               command="python3 /x.py", inject="/tls/t"))
    key = public_key_bytes_of(generate_ephemeral_key())
    nonce = bytes.fromhex(call(plat, "/v1/attest/nonce", {})["nonce"])
    with pytest.raises(errors.AttestationError):
        call(plat, "/v1/attest/config", request("other/app", nonce, key,
                                                evidence_for(plat, nonce, key)))
    assert "not in [999999999999" in plat.last_refusal()


def _run_dirs() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob(f"cloister-run-{os.geteuid()}-*")}


def test_native_files_go_to_a_private_memory_dir_not_the_policy_path(
    plat: Platform, tmp_path: Path
) -> None:
    """A policy path on disk: the file is placed in this run's directory on /dev/shm (the
    path rewritten in the program's arguments), nothing reaches the disk, nothing stays."""
    disk_dir = Path("/var/tmp") / f"cloister-test-{tmp_path.name}"
    out = tmp_path / "copy"
    plat.create(SESSION.format(name="native-disk", measurement=measure("cp"),
                               command=f"cp {disk_dir}/token {out}", inject=f"{disk_dir}/token"))
    done = plat.run("native-disk/app", "--", "cp")
    assert done.returncode == 0, done.stderr
    assert len(out.read_text()) == 20
    assert not disk_dir.exists(), "an injected file reached the disk"
    placed = disk_dir.relative_to("/") / "token"
    assert not [d for d in _run_dirs() if (Path("/dev/shm") / d / placed).exists()], \
        "the run's directory outlived the program"


def test_native_program_on_tmpfs_runs_with_its_files(plat: Platform, tmp_path: Path) -> None:
    shm = Path("/dev/shm") / f"cloister-test-{tmp_path.name}"
    out = tmp_path / "copy"
    measurement = measure("cp")
    plat.create(SESSION.format(name="native-shm", measurement=measurement,
                               command=f"cp {shm}/token {out}", inject=f"{shm}/token"))
    try:
        done = plat.run("native-shm/app", "--", "cp")
        assert done.returncode == 0, done.stderr
        assert len(out.read_text()) == 20
        assert not shm.exists(), "the policy's path was used instead of the run's directory"
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_attestation_inputs_that_do_not_resolve_are_a_refusal_without_the_secret(
    plat: Platform,
) -> None:
    """fspf_tag taken from an ascii secret: a refusal naming no value, never a 500."""
    text = SESSION.format(name="tag-from-secret", measurement=python_measurement(),
                          command="python3 /nonexistent.py", inject="/tls/t")
    text = text.replace("    image_name: img\n", "    image_name: img\n"
                        "    fspf_path: /fspf/fs.pb\n    fspf_key: " + "0" * 64 + "\n"
                        "    fspf_tag: $$SCONE::token$$\n")
    plat.create(text)
    key = public_key_bytes_of(generate_ephemeral_key())
    nonce = bytes.fromhex(call(plat, "/v1/attest/nonce", {})["nonce"])
    with pytest.raises(errors.AttestationError) as caught:
        call(plat, "/v1/attest/config", request("tag-from-secret/app", nonce, key,
                                                evidence_for(plat, nonce, key)))
    assert caught.value.message.endswith("attestation refused")
    assert "cannot be evaluated" in plat.last_refusal()
    audit = "".join(p.read_text() for p in plat.cas.state.glob("audit*"))
    assert "platforms or fspf_tag do not resolve to hex" in audit
