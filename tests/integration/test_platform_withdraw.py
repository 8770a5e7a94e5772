"""``cloister platform remove``: an owner withdraws an enrolment, and that LAS's evidence
stops counting for the owner's sessions at once; another owner's enrolment is untouched."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER, Identity, make_identity
from run_harness import Platform, platform, python_measurement
from test_run_python import session


@pytest.fixture
def plat(tmp_path: Path) -> Iterator[Platform]:
    with platform(tmp_path / "p") as p:
        yield p


def _cli(plat: Platform, identity: Identity, *args: str) -> subprocess.CompletedProcess[str]:
    pem = identity.key.with_suffix(".both.pem")
    pem.write_text(identity.key.read_text() + identity.cert.read_text())
    pem.chmod(0o600)
    return subprocess.run(
        [CLOISTER, "platform", *args, "--cas", f"127.0.0.1:{plat.cas.port}", "--cas-cert",
         str(plat.cas.state / "cas-ca.pem"), "--identity", str(pem), "-o", "json"],
        capture_output=True, text=True, timeout=60)


def test_a_withdrawn_platform_no_longer_counts_and_others_enrolments_stay(
        plat: Platform, tmp_path: Path) -> None:
    program = tmp_path / "app.py"
    program.write_text("print('ran')\n")
    plat.create(session("owned", program, python_measurement()))
    assert plat.run("owned/app").returncode == 0, "enrolled by the harness: it runs"
    other = make_identity(tmp_path / "ids", "other-tenant")
    plat.enroll(identity=other)
    platform_id = plat.las.platform_id()

    removed = _cli(plat, plat.owner, "remove", platform_id)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["removed"] is True

    refused = plat.run("owned/app")
    assert refused.returncode != 0 and "ran" not in refused.stdout
    assert f"platform {platform_id} is not enrolled" in plat.last_refusal()
    listed = _cli(plat, other, "list")
    assert [p["platform_id"] for p in json.loads(listed.stdout)["platforms"]] == [platform_id]
    again = _cli(plat, plat.owner, "remove", platform_id)
    assert again.returncode == 0 and json.loads(again.stdout)["removed"] is False
    audit = [json.loads(line) for line in (plat.cas.state / "audit.log").read_text().splitlines()]
    withdrawals = [e for e in audit if e["action"] == "withdraw-platform"]
    assert [(e["caller"], e["platform"], e["reason"]) for e in withdrawals] == [
        (plat.owner.key_hash(), platform_id, ""),
        (plat.owner.key_hash(), platform_id, "was not enrolled")]


def test_a_bad_platform_id_is_one_line_and_exit_code(plat: Platform) -> None:
    done = _cli(plat, plat.owner, "remove", "not-hex")
    assert done.returncode != 0
    assert "not a platform id (64 hex digits)" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2 and "Traceback" not in done.stderr
