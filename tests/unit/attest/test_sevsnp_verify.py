"""sev-snp: real reports (tests/data/vectors/sev-snp) verify to AMD's roots; copies with a
flipped bit, the wrong product's ARK, an expired certificate each refused with the reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attest import Collateral, VerifiedClaims, _evidence, _x509
from cloister.attest.sevsnp import SnpVerifier, _certs
from cloister.attest.sevsnp import _format as fmt
from cloister.attest.sevsnp._policy import POLICY_KEYS
from support import DATA
from support_snp import AT, SnpSigner

SNP = DATA / "vectors" / "sev-snp"
KEYS = {k.name: k for k in POLICY_KEYS}
VERIFIER = SnpVerifier()
WHEN = datetime(2025, 6, 1, tzinfo=UTC)  # inside every vector certificate's validity


@dataclasses.dataclass(frozen=True)
class Vector:
    folder: str
    cert: str
    at: datetime
    expect: dict[str, Any]


VECTORS = {
    "milan-v2-a": Vector("milan-v2-a", "vcek.der", WHEN, {
        "product": "milan", "report_version": 2, "signing_key": "vcek", "debug": True,
        "reported_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 0x44},
        "chip_id_prefix": "3ac3fe21", "launch_measurement_prefix": "b07af9620f3b839b",
        "report_data": "0102030405" + "00" * 27, "vmpl": 0}),
    "milan-v2-b": Vector("milan-v2-b", "vcek.der", WHEN, {
        "product": "milan", "report_version": 2, "signing_key": "vcek", "debug": False,
        "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73},
        "chip_id_prefix": "d49554ec", "launch_measurement_prefix": "7a1e5c266c0108db",
        "report_data_prefix": "d447b55d", "vmpl": 0}),
    "milan-v2-c": Vector("milan-v2-c", "vcek.der", WHEN, {
        "product": "milan", "report_version": 2, "signing_key": "vcek", "debug": False,
        "reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73},
        "chip_id_prefix": "c38427a3", "launch_measurement_prefix": "a1f3930413247bb3",
        "report_data_prefix": "ec6c52d7", "vmpl": 0, "guest_svn": 4}),
    "milan-v3-vlek": Vector("milan-v3-vlek", "vlek.der", WHEN, {
        "product": "milan", "report_version": 3, "signing_key": "vlek", "debug": False,
        "reported_tcb": {"bootloader": 4, "tee": 0, "snp": 0x18, "microcode": 0xd9},
        "chip_id_prefix": "00000000", "launch_measurement_prefix": "8922ebbdd00ec2c5",
        "report_data_prefix": "819770b7", "vmpl": 1, "csp_contains": "amazonaws.com"}),
    "genoa-v5": Vector("genoa-v5", "vcek.der", datetime(2026, 1, 1, tzinfo=UTC), {
        "product": "genoa", "report_version": 5, "signing_key": "vcek", "debug": False,
        "reported_tcb": {"bootloader": 10, "tee": 0, "snp": 0x19, "microcode": 0x54},
        "chip_id_prefix": "d2421d97", "launch_measurement_prefix": "c57729018b0a6fb9",
        "report_data_prefix": "8100555a", "vmpl": 0}),
}


def _read(vector: Vector) -> tuple[bytes, Collateral]:
    folder = SNP / vector.folder
    return (folder / "report.bin").read_bytes(), Collateral(
        {f"sev-snp/{vector.cert}": (folder / vector.cert).read_bytes()})


def _verify(report: bytes, collateral: Collateral, at: datetime,
            verifier: SnpVerifier = VERIFIER) -> VerifiedClaims | list[str]:
    return verifier.verify(report, expected_report_data=b"", now=at, collateral=collateral)


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize("name", VECTORS)
def test_real_report_verifies_with_the_claims_it_carries(name: str) -> None:
    vector = VECTORS[name]
    claims = _verify(*_read(vector), vector.at)
    assert isinstance(claims, VerifiedClaims), claims
    got, want = claims.type_claims, vector.expect
    assert claims.evidence_type == "sev-snp"
    for key in ("product", "report_version", "signing_key", "debug", "reported_tcb", "vmpl"):
        assert got[key] == want[key], key
    assert got["chip_id"].startswith(want["chip_id_prefix"])
    assert got["launch_measurement"].startswith(want["launch_measurement_prefix"])
    assert len(got["launch_measurement"]) == 96
    assert claims.report_data.hex() == want.get("report_data", claims.report_data.hex())
    assert claims.report_data.hex().startswith(want.get("report_data_prefix", ""))
    assert ("debug-mode" in claims.needs_tolerations) is want["debug"]
    assert claims.requires_pins == ("snp_measurements",)
    if "csp_contains" in want:
        assert want["csp_contains"] in got["csp"]


def test_shipped_roots_are_pinned_for_every_product() -> None:
    roots = _certs.shipped_roots()
    assert sorted(roots) == ["genoa", "milan", "turin"]
    assert all(sorted(r.issuers) == ["vcek", "vlek"] for r in roots.values())


def test_a_tampered_shipped_root_is_refused() -> None:
    pem = (Path(_certs.__file__).parent / "roots" / "milan_ask_ark.pem").read_bytes()
    other = (Path(_certs.__file__).parent / "roots" / "genoa_ask_ark.pem").read_bytes()
    fake = _certs.roots_from([pem], pinned=True)  # the real one passes
    assert "milan" in fake
    bad = SnpSigner()
    with pytest.raises(ValueError, match="does not match its pinned fingerprint"):
        _certs.roots_from([bad.roots_pem()], pinned=True)
    assert "genoa" in _certs.roots_from([other], pinned=True)


NEGATIVE: dict[str, tuple[str, str]] = {
    "flipped bit in the signature": ("signature", "SNP report signature does not verify"),
    "flipped bit in the signed body": ("body", "SNP report signature does not verify"),
    "flipped bit in the VCEK": ("vcek", "SNP report signature does not verify"),
}


@pytest.mark.parametrize("case", NEGATIVE, ids=NEGATIVE)
def test_tampered_copy_is_refused(case: str) -> None:
    report, collateral = _read(VECTORS["milan-v2-b"])
    where, reason = NEGATIVE[case]
    vcek = collateral.files["sev-snp/vcek.der"]
    if where == "signature":
        report = _flip(report, 0x2A0 + 5)
    elif where == "body":
        report = _flip(report, 0x90)  # the launch measurement
    else:
        # a bit of the VCEK's public key: it no longer matches the signature
        vcek = _flip(vcek, vcek.index(b"\x04", 0x100) + 10)
    result = _verify(report, Collateral({"sev-snp/vcek.der": vcek}), WHEN)
    assert isinstance(result, list) and any(reason in r for r in result), result


def test_vcek_signed_by_a_tampered_ask_is_refused() -> None:
    report, collateral = _read(VECTORS["milan-v2-b"])
    roots = _certs.shipped_roots()["milan"]
    ask_der = bytearray(roots.issuers["vcek"].public_bytes(Encoding.DER))
    ask_der[-10] ^= 0x01  # inside the ARK's signature over the ASK
    tampered = _x509.load_certificate(bytes(ask_der))
    assert tampered is not None
    verifier = SnpVerifier({"milan": _certs.ProductRoots(roots.ark, {"vcek": tampered})})
    assert _verify(report, collateral, WHEN, verifier) == [
        "ASK SEV-Milan is not signed by root ARK-Milan"]


def test_wrong_products_ark_is_refused() -> None:
    report, collateral = _read(VECTORS["milan-v2-b"])
    verifier = SnpVerifier({"milan": _certs.shipped_roots()["genoa"]})
    result = _verify(report, collateral, WHEN, verifier)
    assert result == ["VCEK SEV-VCEK is not signed by ASK SEV-Genoa"]


def test_certificate_outside_its_validity_is_refused() -> None:
    report, collateral = _read(VECTORS["milan-v3-vlek"])
    result = _verify(report, collateral, datetime(2026, 1, 1, tzinfo=UTC))
    assert result == ["VLEK SEV-VLEK expired on 2025-12-10"]
    early = _verify(report, collateral, datetime(2024, 1, 1, tzinfo=UTC))
    assert early == ["VLEK SEV-VLEK is not valid before 2024-12-10"]


def test_missing_vcek_names_where_to_put_it() -> None:
    report, _ = _read(VECTORS["milan-v2-b"])
    result = _verify(report, Collateral(), WHEN)
    assert isinstance(result, list) and "put it in the collateral directory" in result[0]


def test_no_time_is_refused_not_read_from_the_clock() -> None:
    report, collateral = _read(VECTORS["milan-v2-b"])
    assert VERIFIER.verify(report, expected_report_data=b"", collateral=collateral) == [
        "no verification time given: certificates cannot be checked"]


def test_vcek_for_another_tcb_is_refused() -> None:
    signer = SnpSigner()  # its VCEK was issued for snp level 8
    signer.tcb = {**signer.tcb, "snp": 9}  # the same key signs a report claiming 9
    claimed = signer.report(b"\1" * 64)
    result = _verify(claimed, signer.collateral(with_vcek=True), AT)
    assert result == ["VCEK was issued for snp level 8, the report's reported TCB has 9 "
                      "(certificate for another TCB)"]


def test_minimum_tcb_and_vmpl_and_measurement_keys_check_real_claims() -> None:
    claims = _verify(*_read(VECTORS["milan-v2-c"]), WHEN)
    assert isinstance(claims, VerifiedClaims)
    tcb = KEYS["snp_min_tcb"]
    assert tcb.check(tcb.parse({"snp": "8", "microcode": "115"}), claims) == []
    assert tcb.check(tcb.parse({"snp": "9"}), claims) == [
        "SEV-SNP reported TCB snp level 8 is below the minimum 9 of "
        "security.attestation.snp_min_tcb: update the firmware or lower the minimum"]
    vmpls = KEYS["snp_vmpls"]
    assert vmpls.check(vmpls.parse(["1"]), claims) == [
        "SEV-SNP report comes from VMPL 0, security.attestation.snp_vmpls allows [1]"]
    pins = KEYS["snp_measurements"]
    launch = claims.type_claims["launch_measurement"]
    assert pins.check(pins.parse([launch]), claims) == []
    assert "is not in security.attestation.snp_measurements" in pins.check(
        pins.parse(["00" * 48]), claims)[0]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("snp_measurements", ["abc"], "an entry of snp_measurements must be 96 hex digits"),
    ("snp_min_tcb", {"bootlodaer": "1"}, "has unknown key 'bootlodaer'"),
    ("snp_vmpls", ["4"], "must be an integer in 0..3"),
])
def test_invalid_policy_values_are_refused(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KEYS[key].parse(value)


def test_envelope_binds_the_runtime_claims() -> None:
    signer = SnpSigner()
    rd, measurement, tag = "11" * 32, "ab" * 32, "12" * 16
    report = signer.report(bytes.fromhex(rd) + fmt.runtime_binding(measurement, tag, 1000, 1001))
    table = fmt.build_cert_table({"vcek": signer.vcek_der()})

    def envelope(claimed_measurement: str) -> bytes:
        claims = {"type": "sev-snp", "measurement": claimed_measurement, "fspf_tag": tag,
                  "report_data": rd, "platform_id": "00" * 32, "uid": 1000, "gid": 1001}
        return fmt.build_evidence(claims, report, table)

    claims = _verify(envelope(measurement), signer.collateral(), AT)
    assert isinstance(claims, VerifiedClaims), claims
    assert (claims.measurement, claims.fspf_tag, claims.report_data.hex()) == (
        measurement, tag, rd)
    assert claims.platform_id == _evidence.platform_id(
        _evidence.spki_der(signer.vcek_key.public_key()))
    assert (claims.uid, claims.gid) == (1000, 1001)
    assert _verify(envelope("cd" * 32), signer.collateral(), AT) == [
        "SNP REPORT_DATA does not bind the claimed measurement, fspf tag, uid and gid (claims "
        "altered after the report was made)"]
    # the test root is trusted only where configured: elsewhere AMD's Milan root decides
    assert _verify(envelope(measurement), Collateral(), AT) == [
        "VCEK SEV-VCEK is not signed by ASK SEV-Milan"]
