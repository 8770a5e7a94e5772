"""``cloister run`` attested with ``tpm`` evidence from a LAS on swtpm, end to end.

A policy that does not tolerate ``debug-mode`` accepts the TPM quote (hardware-
rooted platform identity) when the AK is in ``platforms``, and refuses it when
another platform is pinned; the program never starts on a refusal.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER, make_identity
from run_harness import Platform, platform, python_measurement
from test_tpm_las import Swtpm, require_swtpm

PROGRAM = """\
import os, pathlib
print("token-len", len(os.environ["TOKEN"]))
pathlib.Path(os.environ["MARKER"]).write_text("ran")
"""


def session(name: str, program: Path, platform_id: str, pcrs: str = "") -> str:
    return f"""\
name: {name}
version: "0.3"
services:
  - name: app
    mrenclaves: [{python_measurement()}]
    command: python3 {program}
    environment:
      TOKEN: $$SCONE::token$$
      MARKER: {program.parent}/ran
    platforms: [{platform_id}]
secrets:
  - name: token
    kind: ascii
security:
  attestation:
    tolerate: []
    {pcrs}
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    require_swtpm()
    tpm = Swtpm(tmp_path_factory.mktemp("swtpm-run"))
    tpm.start()
    try:
        with platform(tmp_path_factory.mktemp("tpm-run"), tpm=tpm.tcti) as p:
            yield p
    finally:
        tpm.stop()


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(PROGRAM)
    return path


def test_run_with_tpm_evidence_under_a_hardware_policy(plat: Platform, program: Path) -> None:
    plat.create(session("tpm-ok", program, plat.las.platform_id()))
    done = plat.run("tpm-ok/app")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["token-len 20"]
    assert (program.parent / "ran").read_text() == "ran"


def test_run_with_an_ak_not_in_platforms_is_refused(plat: Platform, program: Path) -> None:
    plat.create(session("tpm-other", program, "d" * 64))
    done = plat.run("tpm-other/app")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "attestation refused" in done.stderr
    assert f"platform {plat.las.platform_id()} not in the 1 platform(s) pinned" in \
        plat.last_refusal()
    assert "Traceback" not in done.stderr
    assert not (program.parent / "ran").exists(), "the program ran despite a refusal"


def current_pcr0(plat: Platform) -> str:
    """PCR sha256:0 as ``cloister las enroll --show-pcrs`` prints it (``sha256:0 <hex>``)."""
    assert plat.las.tpm is not None
    out = subprocess.run(
        [CLOISTER, "las", "enroll", "--tpm", plat.las.tpm, "--state", str(plat.las.state),
         "--show-pcrs"], capture_output=True, text=True, check=True,
    ).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("sha256:0 "))


def test_pinned_pcr_matching_the_quote_is_accepted(plat: Platform, program: Path) -> None:
    pin = f"tpm_pcrs: {{0: {current_pcr0(plat)}}}"
    plat.create(session("tpm-pcr-ok", program, plat.las.platform_id(), pin))
    done = plat.run("tpm-pcr-ok/app")
    assert done.returncode == 0, done.stderr


def test_pinned_pcr_differing_from_the_quote_is_refused(plat: Platform, program: Path) -> None:
    actual = current_pcr0(plat)
    wanted = "ab" * 32
    plat.create(session("tpm-pcr-bad", program, plat.las.platform_id(),
                        f"tpm_pcrs: {{0: {wanted}}}"))
    done = plat.run("tpm-pcr-bad/app")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert f"PCR sha256:0 is {actual}, security.attestation.tpm_pcrs requires {wanted}" \
        in plat.last_refusal()
    assert not (program.parent / "ran").exists(), "the program ran despite a refusal"


def test_tpm_evidence_for_a_service_without_platforms_is_refused(plat: Platform,
                                                                 program: Path) -> None:
    """Without an EK chain the AK is self-carried: only a platforms pin or an enrolment by
    the session's owner makes it count."""
    text = session("tpm-unpinned", program, plat.las.platform_id())
    stranger = make_identity(plat.root / "ids", "stranger")  # has enrolled nothing
    reply = plat.cas.curl("/session", identity=stranger, data=text.replace(
        f"    platforms: [{plat.las.platform_id()}]\n", "").encode())
    assert reply.status == 201, reply.body
    done = plat.run("tpm-unpinned/app")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert f"platform {plat.las.platform_id()} is not enrolled" in plat.last_refusal()
    assert not (program.parent / "ran").exists(), "the program ran despite a refusal"
    plat.enroll(stranger)
    assert plat.run("tpm-unpinned/app").returncode == 0
