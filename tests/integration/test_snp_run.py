"""``cloister run`` attested with ``sev-snp`` evidence, end to end.

The LAS's quoter reads a fake configfs-tsm tree that a test signer (its own
ARK → ASK → VCEK) feeds; the CAS trusts that test root only because this test
configures it (``--collateral DIR`` with ``trusted-roots/sev-snp/``).  The CAS
then decides through the same verifier and decision code as for AMD's reports,
on a fresh nonce each run; the program never starts on a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from run_harness import Platform, platform, python_measurement

from support_snp import FakeTsm, SnpSigner

LAUNCH = "5a" * 48
PROGRAM = """\
import os, pathlib
print("token-len", len(os.environ["TOKEN"]))
pathlib.Path(os.environ["MARKER"]).write_text("ran")
"""


def session(name: str, program: Path, *, launch: str = LAUNCH, min_snp: int = 8) -> str:
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
secrets:
  - name: token
    kind: ascii
security:
  attestation:
    tolerate: []
    snp_measurements: [{launch}]
    snp_min_tcb: {{bootloader: 3, snp: {min_snp}}}
    snp_vmpls: [0]
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, FakeTsm]]:
    root = tmp_path_factory.mktemp("snp-run")
    signer = SnpSigner()
    roots = root / "collateral" / "trusted-roots" / "sev-snp"
    roots.mkdir(parents=True)
    (roots / "test-milan.pem").write_bytes(signer.roots_pem())
    with FakeTsm(root / "tsm", signer) as tsm, platform(
            root, cas_args=("--collateral", str(root / "collateral")),
            las_args=("--evidence", "sev-snp", "--quoter-option", f"tsm={root / 'tsm'}")) as p:
        yield p, tsm


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(PROGRAM)
    return path


def test_run_with_snp_evidence_under_a_hardware_policy(plat: tuple[Platform, FakeTsm],
                                                       program: Path) -> None:
    p, tsm = plat
    p.create(session("snp-ok", program))
    before = tsm.reports
    done = p.run("snp-ok/app")
    assert done.returncode == 0, (done.stderr, p.cas.log.read_text()[-2000:])
    assert done.stdout.splitlines() == ["token-len 20"]
    assert (program.parent / "ran").read_text() == "ran"
    assert tsm.reports == before + 1  # one CPU report, over this run's fresh nonce
    again = p.run("snp-ok/app")
    assert again.returncode == 0 and tsm.reports == before + 2


@pytest.mark.parametrize(("policy", "reason"), [
    ({"launch": "11" * 48}, f"SEV-SNP launch measurement {LAUNCH} is not in "
                            "security.attestation.snp_measurements"),
    ({"min_snp": 9}, "SEV-SNP reported TCB snp level 8 is below the minimum 9"),
])
def test_refused_without_starting_the_program(plat: tuple[Platform, FakeTsm], program: Path,
                                              policy: dict[str, object], reason: str) -> None:
    p, _ = plat
    name = f"snp-bad-{abs(hash(reason)) % 10_000}"
    p.create(session(name, program, **policy))  # type: ignore[arg-type]
    done = p.run(f"{name}/app")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "attestation refused" in done.stderr  # the reasons go to the CAS's audit log
    assert reason in p.last_refusal()
    assert "Traceback" not in done.stderr
    assert not (program.parent / "ran").exists(), "the program ran despite a refusal"
