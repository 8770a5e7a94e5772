"""The ``sev-snp`` verifier: an AMD SEV-SNP report checked up to AMD's root for its product.

Pure: the evidence, the time and the collateral are inputs.  It checks,
collecting every failure (numbers as in the code):

1. the evidence is a supported report (versions 2, 3, 5; ECDSA P-384) and a
   verification time is given;
2. with cloister's envelope, REPORT_DATA binds the runtime claims: bytes
   0..31 are the claims' report data (``SHA256(nonce ‖ ephemeral key)``),
   bytes 32..63 :func:`._format.runtime_binding` of measurement and fspf tag;
3. the product (Milan, Genoa, Turin) comes from the report's CPUID (v3+) or
   the signing certificate, and a trusted root exists for it;
4. the signing key the report names (VCEK or VLEK) is found — in the
   evidence's certificate table, else in the collateral — and its P-384 key
   verifies the signature over bytes 0x000..0x29F;
5. that certificate chains to the product's ASK (VCEK) or ASVK (VLEK) and
   pinned ARK, each valid at the given time (RSA-PSS signatures);
6. the VCEK's TCB extensions equal the report's reported TCB (in the
   product's layout), and its hwID the report's chip id.

Claims: launch measurement, host data, guest policy (debug: needs the
``debug-mode`` toleration), VMPL, TCB values, chip id, ID-key digests,
report data.  The runtime measurement is the one the LAS quoted (bound in
step 2); a raw report has none.  What the evidence proves: an AMD CPU of
that product and TCB launched a guest with that measurement and policy, and
(with the envelope) that guest's LAS asked for these claims.  Against whom:
the host and its administrator, who cannot forge the report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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
from cloister.attest.sevsnp import _certs
from cloister.attest.sevsnp import _format as fmt

REFERENCE_KEY = "snp_measurements"


def _signature_ok(cert: x509.Certificate, report: fmt.Report) -> bool:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return False
    try:
        key.verify(encode_dss_signature(report.r, report.s), report.signed,
                   ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


def _candidates(role: str, certs: Mapping[str, bytes], collateral: Collateral) -> list[Any]:
    """Certificates that could be the signing key: the evidence's first, then collateral's."""
    found = []
    if role in certs:
        cert = _x509.load_certificate(certs[role])
        if cert is not None:
            found.append(cert)
    wanted = "SEV-VLEK" if role == "vlek" else "SEV-VCEK"
    for name in collateral:
        if name.startswith("trusted-roots/"):
            continue
        data = collateral.get(name) or b""
        for cert in _x509.load_certificates(data):
            if _x509.name(cert) == wanted:
                found.append(cert)
    return found


class SnpVerifier:
    """Verifies ``sev-snp`` evidence against ``roots`` (default: AMD's, shipped and pinned)."""

    evidence_type = fmt.SEV_SNP

    def __init__(self, roots: Mapping[str, _certs.ProductRoots] | None = None) -> None:
        self._roots = roots

    @property
    def roots(self) -> Mapping[str, _certs.ProductRoots]:
        if self._roots is None:
            self._roots = _certs.shipped_roots()
        return self._roots

    def _trusted(self, collateral: Collateral) -> dict[str, _certs.ProductRoots]:
        extra = [collateral.get(n) or b"" for n in collateral
                 if n.startswith(_certs.ROOTS_DIRECTORY)]
        return {**self.roots, **_certs.roots_from(extra, pinned=False)} if extra \
            else dict(self.roots)

    def verify(
        self,
        evidence: bytes,
        *,
        expected_report_data: bytes,
        now: datetime | None = None,
        collateral: Collateral = NO_COLLATERAL,
    ) -> VerifiedClaims | list[str]:
        del expected_report_data  # compared by the decision's binding step
        # (1) a supported report, a time to check validity at
        try:
            parsed = fmt.parse_evidence(evidence)
        except errors.EvidenceError as exc:
            return [_evidence.message(exc)]
        report, reasons = parsed.report, []
        if now is None:
            return ["no verification time given: certificates cannot be checked"]
        if report.signature_algo != fmt.SIG_ALGO_ECDSA_P384_SHA384:
            return [f"SNP report signature algorithm {report.signature_algo} is not "
                    "ECDSA P-384 with SHA-384"]
        # (2) REPORT_DATA binds the runtime claims
        if parsed.claims is not None:
            reasons += _binding_problems(report, parsed.claims)
        # (3) product and its trusted roots; (4) the signing key
        role = report.signing_key
        if role not in ("vcek", "vlek"):
            return [*reasons, f"SNP report is signed by no VCEK or VLEK (signing key {role})"]
        candidates = _candidates(role, parsed.certificates, collateral)
        signer = next((c for c in candidates if _signature_ok(c, report)), None)
        product = fmt.product_of_cpuid(report.cpuid) or (
            _certs.product_name_of(signer) if signer is not None else None)
        if signer is None:
            where = (f"none of the {len(candidates)} {role.upper()} certificate(s) given"
                     if candidates else f"no {role.upper()} certificate: put it in the "
                     "collateral directory or send the extended report's certificate table")
            return [*reasons, f"SNP report signature does not verify: {where} "
                    f"(chip {report.chip_id.hex()[:16]}…)"]
        if product is None:
            return [*reasons, "SNP product (Milan, Genoa, Turin) cannot be determined"]
        roots = self._trusted(collateral).get(product)
        issuer = None if roots is None else roots.issuers.get(role)
        if roots is None or issuer is None:
            return [*reasons, f"no trusted AMD root for {product} {role.upper()}s"]
        # (5) the chain to the pinned ARK, valid now
        issuer_role = "ASVK" if role == "vlek" else "ASK"
        reasons += _x509.chain_problems([(signer, role.upper()), (issuer, issuer_role)],
                                        roots.ark, now)
        # (6) the certificate was issued for this TCB and chip
        reasons += _tcb_problems(signer, report, product, role)
        if reasons:
            return reasons
        return _claims(report, parsed.claims, signer, product, role)


def _binding_problems(report: fmt.Report, claims: dict[str, Any]) -> list[str]:
    problems = []
    if report.report_data[:32] != bytes.fromhex(claims["report_data"]):
        problems.append("SNP REPORT_DATA does not carry the claimed report data "
                        "(report made for another nonce or key)")
    if report.report_data[32:] != fmt.runtime_binding(claims["measurement"], claims["fspf_tag"],
                                                      claims["uid"], claims["gid"]):
        problems.append("SNP REPORT_DATA does not bind the claimed measurement, fspf tag, "
                        "uid and gid "
                        "(claims altered after the report was made)")
    return problems


def _tcb_problems(cert: x509.Certificate, report: fmt.Report, product: str,
                  role: str) -> list[str]:
    problems = []
    reported = fmt.tcb_parts(report.reported_tcb, product)
    issued = _certs.tcb_of(cert)
    for part, level in reported.items():
        if issued.get(part) != level:
            problems.append(f"{role.upper()} was issued for {part} level {issued.get(part)}, "
                            f"the report's reported TCB has {level} (certificate for another "
                            "TCB)")
    if role == "vcek" and report.flags & 2 == 0:
        hwid = _certs.hwid_of(cert)
        if hwid != fmt.chip_id_of(report, product):
            problems.append(f"VCEK was issued for another chip than "
                            f"{report.chip_id.hex()[:16]}…")
    return problems


def _claims(report: fmt.Report, claims: dict[str, Any] | None, signer: x509.Certificate,
            product: str, role: str) -> VerifiedClaims:
    spki = _evidence.spki_der(signer.public_key())
    type_claims: dict[str, Any] = {
        "product": product,
        "report_version": report.version,
        "signing_key": role,
        "launch_measurement": report.measurement.hex(),
        "host_data": report.host_data.hex(),
        "guest_policy": report.policy,
        "debug": report.debug,
        "vmpl": report.vmpl,
        "guest_svn": report.guest_svn,
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "reported_tcb": fmt.tcb_parts(report.reported_tcb, product),
        "committed_tcb": fmt.tcb_parts(report.committed_tcb, product),
        "launch_tcb": fmt.tcb_parts(report.launch_tcb, product),
        "current_tcb": fmt.tcb_parts(report.current_tcb, product),
        "chip_id": report.chip_id.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_data_full": report.report_data.hex(),
    }
    if role == "vlek":
        type_claims["csp"] = _certs.csp_of(signer)
    return VerifiedClaims(
        evidence_type=fmt.SEV_SNP,
        measurement=claims["measurement"] if claims else "",
        platform_id=hashlib.sha256(spki).hexdigest(),
        report_data=report.report_data[:32],
        fspf_tag=claims["fspf_tag"] if claims else None,
        uid=claims["uid"] if claims else None,
        gid=claims["gid"] if claims else None,
        needs_tolerations=MappingProxyType(
            {"debug-mode": "SEV-SNP guest policy allows debugging"} if report.debug else {}),
        requires_pins=(REFERENCE_KEY,),
        type_claims=MappingProxyType(type_claims),
    )
