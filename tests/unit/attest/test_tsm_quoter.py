"""The sev-snp quoter against a fake configfs-tsm tree fed by a test signer; the device
interface's structures; option checks."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cloister import errors
from cloister.attest import VerifiedClaims, _tsm, report_data
from cloister.attest.sevsnp import SnpQuoter, SnpVerifier, _device
from cloister.attest.sevsnp._quoter import make_quoter
from support_snp import AT, FakeTsm, SnpSigner

M, TAG = "ab" * 32, "12" * 16


def test_quote_through_fake_configfs_tsm_verifies(tmp_path: Path) -> None:
    signer = SnpSigner()
    with FakeTsm(tmp_path / "report", signer) as tsm:
        quoter = SnpQuoter(tsm=tmp_path / "report")
        rd = report_data(b"n" * 32, b"k" * 32).hex()
        evidence = quoter.quote(measurement=M, fspf_tag=TAG, report_data_hex=rd,
                                uid=1000, gid=1001)
    assert tsm.reports == 2  # the probe at start (for the VCEK) and the quote
    claims = SnpVerifier().verify(evidence, expected_report_data=b"", now=AT,
                                  collateral=signer.collateral())
    assert isinstance(claims, VerifiedClaims), claims
    assert (claims.measurement, claims.fspf_tag, claims.report_data.hex()) == (M, TAG, rd)
    assert (claims.uid, claims.gid) == (1000, 1001)  # the CPU's report binds them too
    assert quoter.platform_id == claims.platform_id


def test_another_provider_is_refused(tmp_path: Path) -> None:
    signer = SnpSigner()
    root = tmp_path / "report"
    with FakeTsm(root, signer), pytest.raises(errors.ConfigError,
                                              match="provider is 'sev_guest', not 'tdx_guest'"):
        _tsm.request(root, bytes(64), provider="tdx_guest")


def test_missing_tree_names_configfs(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"report directory .* does not exist") as err:
        SnpQuoter(tsm=tmp_path / "absent")
    assert "mount configfs" in err.value.details[0]


def test_unanswered_request_times_out_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(errors.EvidenceError, match="did not answer in time"):
        _tsm.request(tmp_path, bytes(64), provider="sev_guest", timeout=0.2)


def test_sev_guest_request_and_response_layout() -> None:
    req = _device.pack_request(b"\1" * 64, 2)
    assert len(req) == 96 and req[64:68] == struct.pack("<I", 2)
    report = bytes(range(256)) * 5
    resp = struct.pack("<II", 0, 0x4A0) + bytes(24) + report[:0x4A0] + bytes(4000 - 32 - 0x4A0)
    assert _device.unpack_response(resp) == report[:0x4A0]
    with pytest.raises(errors.EvidenceError, match="status 0x16"):
        _device.unpack_response(struct.pack("<II", 0x16, 0) + bytes(3992))


def test_quoter_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="unknown sev-snp quoter option 'tms'"):
        make_quoter(tmp_path, {"tms": "/x"})
    with pytest.raises(errors.ConfigError, match=r"vmpl '7' is not 0\.\.3"):
        make_quoter(tmp_path, {"vmpl": "7"})
