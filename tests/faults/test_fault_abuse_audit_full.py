"""The audit log's filesystem fills up: what must be audited waits (507 JSON), reads go on,
and writes resume — with the entries held meanwhile written — once space returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_harness import fill, json_error, tmpfs

from run_harness import platform, python_measurement  # isort: skip

pytestmark = pytest.mark.slow

SESSION = """\
name: {name}
version: "0.3"
services:
  - name: app
    image_name: img
    mrenclaves: [{measurement}]
    command: python3 {program}
images:
  - name: img
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
    export_public: true
security:
  attestation:
    tolerate: [debug-mode]
"""


def test_audit_log_on_a_full_filesystem_is_507_reads_work_writes_resume(tmp_path: Path) -> None:
    program = tmp_path / "app.py"
    program.write_text("print('attested')\n")
    measurement = python_measurement()
    with tmpfs(tmp_path / "audit", "1m") as audit_dir:
        with platform(tmp_path / "plat", cas_args=("--audit-dir", str(audit_dir))) as plat:
            owner, cas = plat.owner, plat.cas
            plat.create(SESSION.format(name="before", measurement=measurement, program=program))
            assert plat.run("before/app").returncode == 0

            fill(audit_dir)
            # writes and configuration releases wait for space: 507 JSON
            for i in range(3):
                reply = cas.curl("/session", identity=owner, data=SESSION.format(
                    name=f"full-{i}", measurement=measurement, program=program).encode())
                assert reply.status == 507, (reply.status, reply.body)
                err = json_error(reply.status, reply.body)
                assert err["code"] == "insufficient_storage" and "audit log" in err["message"]
            refused = plat.run("before/app")
            assert refused.returncode != 0 and "audit log is full" in refused.stderr, (
                refused.returncode, refused.stderr)
            assert "attested" not in refused.stdout
            # reads keep working
            assert cas.curl("/healthz").status == 200
            assert cas.curl("/v1/sessions/before", identity=owner).status == 200
            assert cas.curl("/v1/values/session=before").status == 200
            assert cas.curl("/v1/sessions/full-0", identity=owner).status == 404

            (audit_dir / "filler").unlink()  # space returns; the same CAS takes writes again
            plat.create(SESSION.format(name="after", measurement=measurement, program=program))
            done = plat.run("after/app")
            assert done.returncode == 0 and "attested" in done.stdout, done.stderr
        entries = [json.loads(line) for line in (audit_dir / "audit.log").read_text().splitlines()]
    # the reads made while the disk was full were held and written once space returned
    stamps = [(e["action"], e["session"], e["decision"]) for e in entries]
    assert ("read", "before", "allow") in stamps
    assert ("create", "after", "allow") in stamps
    assert not any(e["session"] == "full-0" and e["decision"] == "allow" for e in entries)
