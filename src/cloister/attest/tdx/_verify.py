"""The ``tdx`` verifier: an Intel TDX quote checked up to the Intel SGX Root CA.

Pure: the evidence, the time and the collateral are inputs.  It checks,
collecting every failure (numbers as in the code):

1. the evidence is a TDX quote v4 or v5 with an ECDSA-256 key, and a time is given;
2. with cloister's envelope, REPORTDATA binds the runtime claims (bytes 0..31
   the claims' report data, 32..63 their measurement and fspf tag);
3. the PCK certificate chain in the quote leads to the pinned Intel SGX Root
   CA, each certificate valid at the given time;
4. the PCK key signed the QE report, and the QE report's data is
   SHA-256(attestation key ‖ QE authentication data) followed by zeros;
5. the attestation key signed the quote (header and TD report);
6. collateral for the PCK's FMSPC: TCB info and QE identity signed by
   Intel's TCB signing key (chained to the root), inside their
   issueDate..nextUpdate; PCK and root CRLs signed and current, neither
   the PCK nor its CA revoked;
7. the QE matches the QE identity (MRSIGNER, ISVPRODID, masked MISCSELECT
   and ATTRIBUTES) and the TDX module the TCB info's (MRSIGNERSEAM, masked
   SEAM attributes);
8. the TCB status of platform, TDX module and QE: Revoked or no matching
   level is refused; OutOfDate, SWHardeningNeeded and ConfigurationNeeded ask
   for SCONE's ``outdated-tcb``, ``software-hardening-needed`` and
   ``insecure-configuration`` tolerations; a debug TD asks for ``debug-mode``.

What it proves: an Intel CPU running a TDX module at that TCB launched a TD
with these MRTD, RTMRs, MRCONFIGID and MROWNER, and (with the envelope) the
TD's LAS asked for these claims.  Against whom: the host and its
administrator, who cannot forge the quote.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloister import errors
from cloister.attest import _evidence, _x509
from cloister.attest._plugin import NO_COLLATERAL, Collateral, VerifiedClaims
from cloister.attest.tdx import _collateral as col
from cloister.attest.tdx import _format as fmt
from cloister.attest.tdx import _roots
from cloister.attest.tdx._pck import PckInfo, pck_info

REFERENCE_KEY = "tdx_mrtds"


def _p256_ok(key: Any, signature: bytes, data: bytes) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _raw_key(xy: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)
    except ValueError:
        return None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class TdxVerifier:
    """Verifies ``tdx`` evidence against ``root`` (default: Intel's, shipped and pinned)."""

    evidence_type = fmt.TDX

    def __init__(self, root: x509.Certificate | None = None) -> None:
        self._root = root

    def _roots(self, collateral: Collateral) -> list[x509.Certificate]:
        if self._root is None:
            self._root = _roots.shipped_root()
        return [self._root, *_roots.configured_roots(collateral)]

    def verify(
        self,
        evidence: bytes,
        *,
        expected_report_data: bytes,
        now: datetime | None = None,
        collateral: Collateral = NO_COLLATERAL,
    ) -> VerifiedClaims | list[str]:
        del expected_report_data  # compared by the decision's binding step
        # (1) a TDX quote, a time to check validity at
        try:
            parsed = fmt.parse_evidence(evidence)
        except errors.EvidenceError as exc:
            return [_evidence.message(exc)]
        if now is None:
            return ["no verification time given: certificates and collateral cannot be checked"]
        quote, reasons = parsed.quote, []
        # (2) REPORTDATA binds the runtime claims
        if parsed.claims is not None:
            reasons += _binding_problems(quote, parsed.claims)
        # (3) the PCK chain to the pinned root
        chain = _x509.load_certificates(quote.pck_chain_pem)
        if len(chain) < 2:
            return [*reasons, "TDX quote's PCK certificate chain has fewer than two certificates"]
        pck, ca = chain[0], chain[1]
        root = _anchor(ca, self._roots(collateral))
        if root is None:
            return [*reasons, f"PCK CA {_x509.name(ca)} is not signed by a trusted Intel root"]
        reasons += _x509.chain_problems([(pck, "PCK certificate"), (ca, "PCK CA")], root, now)
        # (4) the QE report: signed by the PCK key, binding the attestation key
        if not _p256_ok(pck.public_key(), quote.qe_report_signature, quote.qe_report.raw):
            reasons.append("QE report signature does not verify under the PCK certificate")
        binding = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
        if quote.qe_report.report_data != binding:
            reasons.append("QE report data is not SHA-256(attestation key ‖ QE authentication "
                           "data): the attestation key is not the QE's")
        # (5) the quote signature by the attestation key
        key = _raw_key(quote.attestation_key)
        if key is None or not _p256_ok(key, quote.signature, quote.signed):
            reasons.append("TDX quote signature does not verify under its attestation key "
                           "(quote altered)")
        try:
            info = pck_info(pck)
        except errors.EvidenceError as exc:
            return [*reasons, _evidence.message(exc)]
        # (6)-(8) collateral, identities, TCB status
        tolerations, extra = _check_collateral(quote, info, pck=pck, ca=ca, root=root,
                                               collateral=collateral, now=now, reasons=reasons)
        if quote.td.debug:
            tolerations["debug-mode"] = "TDX TD attributes allow debugging"
        if reasons:
            return reasons
        return _claims(quote, parsed.claims, info, pck=pck, tolerations=tolerations, extra=extra)


def _anchor(ca: x509.Certificate, roots: list[x509.Certificate]) -> x509.Certificate | None:
    return next((r for r in roots if _x509.issued_by(ca, r)), None)


def _binding_problems(quote: fmt.Quote, claims: dict[str, Any]) -> list[str]:
    problems = []
    data = quote.td.report_data
    if data[:32] != bytes.fromhex(claims["report_data"]):
        problems.append("TDX REPORTDATA does not carry the claimed report data "
                        "(quote made for another nonce or key)")
    if data[32:] != _evidence.runtime_binding(fmt.TDX, claims["measurement"], claims["fspf_tag"],
                                              claims["uid"], claims["gid"]):
        problems.append("TDX REPORTDATA does not bind the claimed measurement, fspf tag, "
                        "uid and gid "
                        "(claims altered after the quote was made)")
    return problems


def _signed_problems(what: str, signed: col.SignedJson, chain_pem: bytes,
                     root: x509.Certificate, now: datetime) -> list[str]:
    problems = []
    chain = _x509.load_certificates(chain_pem)
    if not chain:
        return [f"{what} has no issuer chain"]
    signer = chain[0]
    problems += _x509.chain_problems([(signer, "TCB signing certificate")], root, now)
    if not _p256_ok(signer.public_key(), signed.signature, signed.body):
        problems.append(f"{what} signature does not verify under {_x509.name(signer)} "
                        "(collateral altered)")
    try:
        issued, next_update = (_parse_time(signed.value["issueDate"]),
                               _parse_time(signed.value["nextUpdate"]))
    except (KeyError, ValueError):
        return [*problems, f"{what} has no valid issueDate/nextUpdate"]
    if not issued <= now <= next_update:
        problems.append(f"{what} is valid from {issued:%Y-%m-%d %H:%M} to "
                        f"{next_update:%Y-%m-%d %H:%M} UTC, not at {now:%Y-%m-%d %H:%M}: "
                        "fetch current collateral")
    return problems


def _crl_problems(what: str, data: bytes, issuer: x509.Certificate, serials: list[int],
                  now: datetime) -> list[str]:
    crl = col.load_crl(data)
    if crl is None:
        return [f"{what} is not a CRL"]
    problems = []
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        problems.append(f"{what} is not signed by {_x509.name(issuer)}")
    next_update = crl.next_update_utc
    if now < crl.last_update_utc or (next_update is not None and now > next_update):
        problems.append(f"{what} is not current at {now:%Y-%m-%d} (fetch current collateral)")
    for serial in serials:
        if crl.get_revoked_certificate_by_serial_number(serial) is not None:
            problems.append(f"certificate with serial {serial:x} is revoked by {what}")
    return problems


def _check_collateral(
    quote: fmt.Quote, info: PckInfo, *, pck: x509.Certificate, ca: x509.Certificate,
    root: x509.Certificate, collateral: Collateral, now: datetime, reasons: list[str],
) -> tuple[dict[str, str], dict[str, Any]]:
    sets, unreadable = col.collateral_sets(collateral)
    fmspc = info.fmspc.hex()
    found = [s for s in sets if s.tcb_info.value.get("fmspc", "").lower() == fmspc]
    if not found:
        reasons += unreadable
        reasons.append(f"no TDX collateral (TCB info) for FMSPC {fmspc}: put the PCS or PCCS "
                       "responses in the collateral directory")
        return {}, {}
    cset = found[0]
    tcb_info, identity = cset.tcb_info.value, cset.qe_identity.value
    reasons += _signed_problems(f"TCB info ({cset.where})", cset.tcb_info, cset.tcb_chain, root,
                                now)
    reasons += _signed_problems(f"QE identity ({cset.where})", cset.qe_identity, cset.qe_chain,
                                root, now)
    reasons += _crl_problems("the PCK CRL", cset.pck_crl, ca, [pck.serial_number], now)
    reasons += _crl_problems("the root CA CRL", cset.root_crl, root, [ca.serial_number], now)
    if tcb_info.get("id") != "TDX" or identity.get("id") != "TD_QE":
        reasons.append(f"collateral {cset.where} is not TDX TCB info and TD_QE identity")
    if tcb_info.get("pceId", "").lower() != info.pce_id.hex():
        reasons.append("TCB info is for another PCE id than the PCK certificate's")
    # (7) the QE and the TDX module are Intel's
    qe = quote.qe_report
    if (qe.mrsigner.hex() != identity.get("mrsigner", "").lower()
            or qe.isvprodid != identity.get("isvprodid")
            or not col.masked_equal(qe.miscselect.to_bytes(4, "big"), identity["miscselect"],
                                    identity["miscselectMask"])
            or not col.masked_equal(qe.attributes, identity["attributes"],
                                    identity["attributesMask"])):
        reasons.append("the quoting enclave does not match Intel's TD_QE identity")
    module = tcb_info.get("tdxModule")
    if module is not None and (
            quote.td.mrsignerseam.hex() != module["mrsigner"].lower()
            or not col.masked_equal(quote.td.seam_attributes, module["attributes"],
                                    module["attributesMask"])):
        reasons.append("the TDX module is not signed by the MRSIGNERSEAM the TCB info names")
    # (8) TCB status of platform, TDX module and QE: the worst counts
    level = col.platform_level(tcb_info, info.tcb_components, info.pce_svn, quote.td.tee_tcb_svn)
    qe_lvl = col.qe_level(identity, qe.isvsvn)
    # below every listed level is older than the oldest OutOfDate level (Intel lists only
    # levels it still describes): out of date, not unknown
    platform = level["tcbStatus"] if level is not None else "OutOfDate"
    qe_status = qe_lvl["tcbStatus"] if qe_lvl is not None else "OutOfDate"
    module_status, module_problem = col.module_status(tcb_info, quote.td)
    if module_problem is not None:
        reasons.append(module_problem)
    status = col.worse(col.worse(platform, qe_status), module_status)
    if status == "Revoked":
        reasons.append(f"the TCB of FMSPC {fmspc} is revoked")
        return {}, {}
    tolerations = {t: f"TDX TCB status {status}" for t in col.STATUS_TOLERATIONS.get(status, ())}
    levels = [lv for lv in (level, qe_lvl) if lv is not None]
    extra = {"tcb_status": status, "platform_tcb_status": platform,
             "qe_tcb_status": qe_status, "tdx_module_tcb_status": module_status,
             "tcb_date": level.get("tcbDate") if level else None,
             "advisory_ids": sorted({a for lv in levels for a in lv.get("advisoryIDs", [])})}
    return tolerations, extra


def _claims(quote: fmt.Quote, claims: dict[str, Any] | None, info: PckInfo, *,
            pck: x509.Certificate, tolerations: dict[str, str],
            extra: dict[str, Any]) -> VerifiedClaims:
    td = quote.td
    type_claims = {
        "quote_version": quote.version,
        "mrtd": td.mrtd.hex(),
        **{f"rtmr{i}": rtmr.hex() for i, rtmr in enumerate(td.rtmrs)},
        "mrconfigid": td.mrconfigid.hex(),
        "mrowner": td.mrowner.hex(),
        "mrownerconfig": td.mrownerconfig.hex(),
        "mrseam": td.mrseam.hex(),
        "td_attributes": td.td_attributes.hex(),
        "debug": td.debug,
        "xfam": td.xfam.hex(),
        "tee_tcb_svn": td.tee_tcb_svn.hex(),
        "report_data_full": td.report_data.hex(),
        "fmspc": info.fmspc.hex(),
        "pce_svn": info.pce_svn,
        "qe_svn": quote.qe_report.isvsvn,
        **extra,
    }
    return VerifiedClaims(
        evidence_type=fmt.TDX,
        measurement=claims["measurement"] if claims else "",
        platform_id=_evidence.platform_id(_evidence.spki_der(pck.public_key())),
        report_data=td.report_data[:32],
        fspf_tag=claims["fspf_tag"] if claims else None,
        uid=claims["uid"] if claims else None,
        gid=claims["gid"] if claims else None,
        needs_tolerations=MappingProxyType(tolerations),
        requires_pins=(REFERENCE_KEY,),
        type_claims=MappingProxyType(type_claims),
    )
