"""`cloister attest verify` as an operator runs it: each real vector prints its claims and
exits 0; each tampered copy or stale check exits 3 naming the reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import DATA

V = DATA / "vectors"
CLOISTER = [str(Path(sys.executable).with_name("cloister"))]  # the console script

#: name → (file, type, collateral dir or None, time, claim that must be printed)
VECTORS = {
    "sev-snp milan-v2-a": ("sev-snp/milan-v2-a/report.bin", "sev-snp", "sev-snp/milan-v2-a",
                           "2025-06-01T00:00:00Z", ("chip_id", "3ac3fe21")),
    "sev-snp milan-v2-b": ("sev-snp/milan-v2-b/report.bin", "sev-snp", "sev-snp/milan-v2-b",
                           "2025-06-01T00:00:00Z", ("chip_id", "d49554ec")),
    "sev-snp milan-v2-c": ("sev-snp/milan-v2-c/report.bin", "sev-snp", "sev-snp/milan-v2-c",
                           "2025-06-01T00:00:00Z", ("chip_id", "c38427a3")),
    "sev-snp milan-v3-vlek": ("sev-snp/milan-v3-vlek/report.bin", "sev-snp",
                              "sev-snp/milan-v3-vlek", "2025-06-01T00:00:00Z",
                              ("signing_key", "vlek")),
    "sev-snp genoa-v5": ("sev-snp/genoa-v5/report.bin", "sev-snp", "sev-snp/genoa-v5",
                         "2026-01-01T00:00:00Z", ("product", "genoa")),
    "tdx spr-v4": ("tdx/spr-v4/quote.bin", "tdx", "tdx/spr-v4", "2023-06-20T12:00:00Z",
                   ("fmspc", "50806f000000")),
    "tdx dstack-v4": ("tdx/dstack-v4/quote.bin", "tdx", "tdx/dstack-v4",
                      "2025-06-25T12:00:00Z", ("mrtd", "91eb2b44d141d4ec")),
    "tdx dstack-v5": ("tdx/dstack-v5-outdated/quote.bin", "tdx", "tdx/dstack-v5-outdated",
                      "2026-02-20T12:00:00Z", ("tcb_status", "OutOfDate")),
    "az-snp-vtpm evidence": ("az-snp-vtpm/milan/evidence.json", "az-snp-vtpm", None,
                             "2025-06-01T00:00:00Z", ("report_data", "6368616c6c656e6765")),
    "tpm gce vendor chain": ("gce-vtpm/cos85-nonce9009.pb", "tpm", None, "2025-06-01T00:00:00Z",
                             ("report_data", "9009")),
    "az-snp-vtpm hcl report": ("az-snp-vtpm/milan/hcl-report.bin", "az-snp-vtpm",
                               "az-snp-vtpm/milan", "2025-06-01T00:00:00Z",
                               ("vtpm_quote", False)),
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLOISTER, "attest", "verify", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _args(file: Path, type_: str, collateral: str | None, at: str) -> list[str]:
    extra = [] if collateral is None else ["--collateral", str(V / collateral)]
    return [str(file), "--type", type_, *extra, "--at", at]


@pytest.mark.parametrize("name", VECTORS)
def test_each_vector_prints_its_claims(name: str) -> None:
    file, type_, collateral, at, (key, want) = VECTORS[name]
    done = _run(*_args(V / file, type_, collateral, at))
    assert done.returncode == 0, done.stderr
    claims = json.loads(done.stdout)
    assert claims["evidence_type"] == type_
    assert claims[key] == want or (isinstance(want, str) and str(claims[key]).startswith(want))


def _flipped(tmp_path: Path, file: str, offset: int) -> Path:
    data = bytearray((V / file).read_bytes())
    data[offset] ^= 0x01
    out = tmp_path / Path(file).name
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(("name", "file", "offset", "type_", "collateral", "at", "reason"), [
    ("snp signature", "sev-snp/milan-v2-b/report.bin", 0x2A0 + 3, "sev-snp",
     "sev-snp/milan-v2-b", "2025-06-01T00:00:00Z", "SNP report signature does not verify"),
    ("snp body", "sev-snp/genoa-v5/report.bin", 0x90, "sev-snp", "sev-snp/genoa-v5",
     "2026-01-01T00:00:00Z", "SNP report signature does not verify"),
    ("tdx body", "tdx/dstack-v4/quote.bin", 200, "tdx", "tdx/dstack-v4", "2025-06-25T12:00:00Z",
     "TDX quote signature does not verify under its attestation key"),
])
def test_tampered_copy_exits_3_with_its_reason(tmp_path: Path, name: str, file: str, offset: int,
                                               type_: str, collateral: str, at: str,
                                               reason: str) -> None:
    done = _run(*_args(_flipped(tmp_path, file, offset), type_, collateral, at))
    assert done.returncode == 3, (name, done.stdout, done.stderr)
    assert reason in done.stderr and done.stdout == ""


def test_collateral_outside_its_validity_exits_3() -> None:
    file, type_, collateral, _, _ = VECTORS["tdx dstack-v4"]
    done = _run(*_args(V / file, type_, collateral, "2025-09-01T00:00:00Z"))
    assert done.returncode == 3
    assert "fetch current collateral" in done.stderr


def test_report_with_another_chips_vcek_exits_3(tmp_path: Path) -> None:
    """A Genoa report given only a Milan chip's VCEK: nothing verifies its signature."""
    collateral = tmp_path / "c"
    shutil.copytree(V / "sev-snp" / "milan-v2-b", collateral)
    done = _run(*_args(V / "sev-snp/genoa-v5/report.bin", "sev-snp", str(collateral),
                       "2026-01-01T00:00:00Z"))
    assert done.returncode == 3
    assert "SNP report signature does not verify" in done.stderr


def test_unknown_type_and_bad_time_are_usage_errors() -> None:
    file = str(V / "sev-snp/milan-v2-b/report.bin")
    assert _run(file, "--type", "sgx-epid").returncode == 2
    assert "not an ISO 8601 time" in _run(file, "--type", "sev-snp", "--at", "noon").stderr
