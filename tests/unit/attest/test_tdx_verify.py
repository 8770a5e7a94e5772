"""tdx: real quotes (tests/data/vectors/tdx) verify to the Intel SGX Root CA with their
collateral; copies with a flipped bit, stale collateral, an outdated TCB each named."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloister.attest import Collateral, VerifiedClaims, load_collateral
from cloister.attest.tdx import TdxVerifier
from cloister.attest.tdx._policy import POLICY_KEYS
from support import DATA

TDX = DATA / "vectors" / "tdx"
VERIFIER = TdxVerifier()
KEYS = {k.name: k for k in POLICY_KEYS}
AT = {
    "spr-v4": datetime(2023, 6, 20, 12, tzinfo=UTC),
    "dstack-v4": datetime(2025, 6, 25, 12, tzinfo=UTC),
    "dstack-v5-outdated": datetime(2026, 2, 20, 12, tzinfo=UTC),
}
EXPECT = {
    "spr-v4": {"quote_version": 4, "fmspc": "50806f000000", "mrtd": "6363b8043668a3ad953278e1",
               "rtmrs": ("2927da70461c", "2c700b8ba9b8", "8652f0caaba7", "000000000000"),
               "report_data": "6c62dec1b8191749", "tcb_status": "OutOfDate"},
    "dstack-v4": {"quote_version": 4, "fmspc": "b0c06f000000", "mrtd": "91eb2b44d141d4ece09f0c75",
                  "rtmrs": ("44c0197b3915", "0084452c0166", "d833feef2cd9", "000000000000"),
                  "report_data": "9a9d48e7f6799642", "tcb_status": "UpToDate"},
    "dstack-v5-outdated": {
        "quote_version": 5, "fmspc": "90c06f000000", "mrtd": "273828c46252fcbdd8ad2dd9",
        "rtmrs": ("000000000000",) * 4, "report_data": "d2142b643598eb5f",
        "tcb_status": "OutOfDate"},
}


def _verify(name: str, quote: bytes | None = None, collateral: Collateral | None = None,
            at: datetime | None = None) -> VerifiedClaims | list[str]:
    folder = TDX / name
    return VERIFIER.verify(
        (folder / "quote.bin").read_bytes() if quote is None else quote,
        expected_report_data=b"", now=at or AT[name],
        collateral=load_collateral(folder) if collateral is None else collateral)


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize("name", EXPECT)
def test_real_quote_verifies_with_its_claims(name: str) -> None:
    claims = _verify(name)
    assert isinstance(claims, VerifiedClaims), claims
    got, want = claims.type_claims, EXPECT[name]
    assert got["quote_version"] == want["quote_version"]
    assert got["fmspc"] == want["fmspc"]
    assert got["mrtd"].startswith(want["mrtd"]) and len(got["mrtd"]) == 96
    for index, prefix in enumerate(want["rtmrs"]):
        assert got[f"rtmr{index}"].startswith(prefix)
    assert claims.report_data.hex().startswith(want["report_data"])
    assert got["tcb_status"] == want["tcb_status"]
    assert got["debug"] is False and "debug-mode" not in claims.needs_tolerations
    assert ("outdated-tcb" in claims.needs_tolerations) is (want["tcb_status"] == "OutOfDate")
    assert claims.requires_pins == ("tdx_mrtds",)


def test_trailing_bytes_after_the_quote_are_ignored() -> None:
    quote = (TDX / "dstack-v4" / "quote.bin").read_bytes()
    assert isinstance(_verify("dstack-v4", quote + b"\0" * 39), VerifiedClaims)


def test_flipped_bit_in_the_quote_signature() -> None:
    quote = (TDX / "dstack-v4" / "quote.bin").read_bytes()
    assert _verify("dstack-v4", _flip(quote, 632 + 4 + 3)) == [
        "TDX quote signature does not verify under its attestation key (quote altered)"]


def test_flipped_bit_in_the_signed_body() -> None:
    quote = (TDX / "dstack-v4" / "quote.bin").read_bytes()
    assert _verify("dstack-v4", _flip(quote, 48 + 16 + 96 + 24 + 3)) == [  # inside MRTD
        "TDX quote signature does not verify under its attestation key (quote altered)"]


def test_flipped_bit_in_the_qe_report_breaks_its_pck_signature() -> None:
    quote = (TDX / "dstack-v4" / "quote.bin").read_bytes()
    qe_report = 632 + 4 + 64 + 64 + 6
    result = _verify("dstack-v4", _flip(quote, qe_report + 64))  # the QE's MRENCLAVE
    assert "QE report signature does not verify under the PCK certificate" in result


def test_flipped_bit_in_the_pck_certificate_chain() -> None:
    quote = (TDX / "dstack-v4" / "quote.bin").read_bytes()
    start = quote.index(b"-----BEGIN CERTIFICATE-----") + 200  # inside the PCK leaf's base64
    changed = bytearray(quote)
    changed[start] = ord("A") if changed[start] != ord("A") else ord("B")
    result = _verify("dstack-v4", bytes(changed))
    assert isinstance(result, list) and result  # refused: whatever the base64 turned into


def test_collateral_outside_its_validity_is_refused() -> None:
    result = _verify("dstack-v4", at=datetime(2025, 8, 1, tzinfo=UTC))
    assert isinstance(result, list)
    assert any("TCB info" in r and "fetch current collateral" in r for r in result)
    assert any("QE identity" in r for r in result)
    assert any("the PCK CRL is not current" in r for r in result)


def test_expired_tcb_signing_certificate_in_older_collateral() -> None:
    """The 2018 TCB signing certificate expired on 2025-05-21: old collateral used today fails."""
    result = _verify("spr-v4", at=datetime(2025, 6, 1, tzinfo=UTC))
    assert isinstance(result, list)
    assert "TCB signing certificate Intel SGX TCB Signing expired on 2025-05-21" in result


def test_tampered_tcb_info_is_refused(tmp_path: Path) -> None:
    shutil.copytree(TDX / "spr-v4", tmp_path / "c")
    path = tmp_path / "c" / "tcb_info.json"
    path.write_text(path.read_text().replace('"tcbEvaluationDataNumber":15',
                                             '"tcbEvaluationDataNumber":16'))
    result = _verify("spr-v4", collateral=load_collateral(tmp_path / "c"))
    assert isinstance(result, list)
    assert any(r.startswith("TCB info (.) signature does not verify") for r in result), result


def test_collateral_for_another_fmspc_is_named() -> None:
    other = load_collateral(TDX / "spr-v4")
    result = _verify("dstack-v4", collateral=other)
    assert result == ["no TDX collateral (TCB info) for FMSPC b0c06f000000: put the PCS or "
                      "PCCS responses in the collateral directory"]


def test_reference_keys_check_real_claims() -> None:
    claims = _verify("dstack-v4")
    assert isinstance(claims, VerifiedClaims)
    mrtds, rtmrs = KEYS["tdx_mrtds"], KEYS["tdx_rtmrs"]
    assert mrtds.check(mrtds.parse([claims.type_claims["mrtd"]]), claims) == []
    assert "is not in security.attestation.tdx_mrtds" in mrtds.check(
        mrtds.parse(["00" * 48]), claims)[0]
    assert rtmrs.check(rtmrs.parse({"0": claims.type_claims["rtmr0"]}), claims) == []
    assert rtmrs.check(rtmrs.parse({"3": "11" * 48}), claims)[0].startswith(
        "TDX RTMR3 is 000000000000")


def test_bundle_and_pcs_layouts_both_read() -> None:
    bundle = json.loads((TDX / "dstack-v4" / "collateral.json").read_text())
    assert {"tcb_info", "qe_identity", "pck_crl", "root_ca_crl"} <= set(bundle)
    assert isinstance(_verify("spr-v4"), VerifiedClaims)  # PCS files
    assert isinstance(_verify("dstack-v4"), VerifiedClaims)  # one collateral.json
