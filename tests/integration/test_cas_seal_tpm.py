"""The tpm seal on swtpm: the CAS unseals itself on restart, another TPM cannot, a changed
bound PCR stops it with a clear message; rollback to an older copy is refused and the
documented override accepts it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CAS, CLOISTER, make_identity
from test_tpm_las import Swtpm, require_swtpm


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[Swtpm]:
    require_swtpm()
    sw = Swtpm(tmp_path / "swtpm")
    sw.start()
    yield sw
    sw.stop()


def _serve_fails(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLOISTER, "cas", "serve", "--state", str(state), "--listen",
                           "127.0.0.1:0", *extra], capture_output=True, text=True, timeout=60)


def _session(name: str) -> bytes:
    return f"name: {name}\nversion: \"0.3\"\nsecrets:\n  - name: s\n    kind: ascii\n".encode()


def test_tpm_seal_restart_another_tpm_and_pcr_binding(tmp_path: Path, tpm: Swtpm) -> None:
    owner = make_identity(tmp_path / "ids", "owner")
    state = tmp_path / "state"
    cas = CAS(state, tmp_path / "cas.log", seal_args=("--seal", "tpm", "--tpm", tpm.tcti))
    cas.start()  # unsealed by the TPM, no operator
    try:
        assert cas.curl("/session", identity=owner, data=_session("one")).status == 201
    finally:
        cas.stop()
    cas.start()  # a restart unseals on its own
    try:
        assert cas.curl("/v1/sessions/one", identity=owner).status == 200
    finally:
        cas.stop()
    other = Swtpm(tmp_path / "other-swtpm")
    other.start()
    try:
        refused = _serve_fails(state, "--tpm", other.tcti)
    finally:
        other.stop()
    assert refused.returncode == 2
    assert "sealed by another TPM" in refused.stderr and "Traceback" not in refused.stderr

    bound = tmp_path / "bound"
    cas = CAS(bound, tmp_path / "bound.log",
              seal_args=("--seal", "tpm", "--tpm", tpm.tcti, "--pcrs", "16"))
    cas.start()
    cas.stop()
    from cloister.cas._seal_tpm import extend_pcr  # noqa: PLC0415

    extend_pcr(tpm.tcti, 16, b"a changed boot component")
    refused = _serve_fails(bound)
    assert refused.returncode == 2
    assert "PCR values 16 (sha256) differ from those it was sealed to" in refused.stderr


def test_rollback_to_an_older_copy_is_refused_and_can_be_accepted(
    tmp_path: Path, tpm: Swtpm
) -> None:
    owner = make_identity(tmp_path / "ids", "owner")
    state = tmp_path / "state"
    cas = CAS(state, tmp_path / "cas.log", seal_args=("--seal", "tpm", "--tpm", tpm.tcti))
    cas.start()
    try:
        for n in range(2):
            assert cas.curl("/session", identity=owner, data=_session(f"old-{n}")).status == 201
    finally:
        cas.stop()
    backup = tmp_path / "backup"
    shutil.copytree(state, backup)
    cas.start()
    try:
        for n in range(3):
            assert cas.curl("/session", identity=owner, data=_session(f"new-{n}")).status == 201
    finally:
        cas.stop()  # brings the TPM counter up to the last write
    shutil.rmtree(state)
    shutil.copytree(backup, state)
    refused = _serve_fails(state)
    assert refused.returncode == 4, refused.stderr
    line = refused.stderr
    assert "older than its TPM counter" in line and "missing 3 write(s)" in line
    head = int(line.split("store head counter ")[1].split(",")[0])
    nv = int(line.split("TPM NV counter ")[1].split(")")[0])
    assert nv == head + 3
    assert f"cloister cas serve --accept-rollback {head}" in line
    wrong = _serve_fails(state, "--accept-rollback", str(head + 1))
    assert wrong.returncode == 4  # only the copy the refusal named
    cas = CAS(state, tmp_path / "accepted.log", ("--accept-rollback", str(head)))
    cas.start()
    try:
        assert cas.curl("/v1/sessions/old-1", identity=owner).status == 200
        assert cas.curl("/v1/sessions/new-0", identity=owner).status == 404
        assert cas.curl("/session", identity=owner, data=_session("after")).status == 201
    finally:
        cas.stop()
    assert "accepting a rolled-back CAS state on purpose" in (tmp_path / "accepted.log").read_text()
    cas = CAS(state, tmp_path / "clean.log")  # the next start needs no override
    cas.start()
    cas.stop()
