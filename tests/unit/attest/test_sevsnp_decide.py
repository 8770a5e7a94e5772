"""sev-snp through the CAS's own decision: a test signer whose root the test trusts, a
policy with the plug-in's reference values, each refusal with its reason."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cloister.attest import generate_ephemeral_key, public_key_bytes_of, report_data
from cloister.attest.sevsnp import _format as fmt
from cloister.cas._decide import Decision, decide
from cloister.policy import load_session
from support_snp import AT, SnpSigner

M = "ab" * 32
LAUNCH = b"\x5a" * 48
SIGNER = SnpSigner()
POLICY = f"""\
name: snp
version: "0.3"
services:
  - name: app
    mrenclaves: [{M}]
    command: python3 app.py
security:
  attestation:
    snp_measurements: [{LAUNCH.hex()}]
    snp_min_tcb: {{bootloader: 3, snp: 8}}
    snp_vmpls: [0]
"""


def _decide(policy: str = POLICY, *, debug: bool = False, bind_other: bool = False,
            launch: bytes = LAUNCH, **_: Any) -> Decision:
    session = load_session(policy)
    nonce = os.urandom(32)
    key = public_key_bytes_of(generate_ephemeral_key())
    bound = public_key_bytes_of(generate_ephemeral_key()) if bind_other else key
    rd = report_data(nonce, bound)
    report = SIGNER.report(rd + fmt.runtime_binding(M, None, 0, 0), measurement=launch,
                           policy=0x30000 | (fmt.POLICY_DEBUG if debug else 0))
    claims = {"type": "sev-snp", "measurement": M, "fspf_tag": None, "report_data": rd.hex(),
              "platform_id": "00" * 32, "uid": 0, "gid": 0}
    evidence = fmt.build_evidence(claims, report, fmt.build_cert_table({"vcek": SIGNER.vcek_der()}))
    return decide(service=session.services[0], attestation=session.security.attestation,
                  evidence=evidence, nonce=nonce, nonce_ok=True, ephemeral_public_key=key,
                  now=AT, collateral=SIGNER.collateral())


def test_accepted_with_its_reference_values() -> None:
    decision = _decide()
    assert decision.accepted, decision.reasons
    assert decision.claims is not None
    assert decision.claims.type_claims["launch_measurement"] == LAUNCH.hex()


REFUSED = {
    "debug bit without debug-mode": (
        {"debug": True},
        "SEV-SNP guest policy allows debugging not tolerated: add debug-mode to "
        "security.attestation.tolerate"),
    "report data of another key": (
        {"bind_other": True}, "report data is not SHA256(nonce ‖ ephemeral public key)"),
    "launch measurement not pinned": (
        {"launch": b"\x11" * 48}, "is not in security.attestation.snp_measurements"),
    "TCB below the minimum": (
        {"policy": POLICY.replace("snp: 8", "snp: 9")},
        "SEV-SNP reported TCB snp level 8 is below the minimum 9"),
    "no reference measurement at all": (
        {"policy": POLICY.replace(f"    snp_measurements: [{LAUNCH.hex()}]\n", "")},
        "sev-snp evidence counts only against reference values: set "
        "security.attestation.snp_measurements"),
}


@pytest.mark.parametrize("case", REFUSED, ids=REFUSED)
def test_refused_with_its_reason(case: str) -> None:
    options, reason = REFUSED[case]
    decision = _decide(**options) if "policy" not in options else _decide(options["policy"])
    assert not decision.accepted
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_debug_tolerated_is_accepted() -> None:
    tolerant = POLICY + "    tolerate: [debug-mode]\n"
    assert _decide(tolerant, debug=True).accepted


def test_a_typo_in_a_plug_in_key_names_the_nearest_key() -> None:
    with pytest.raises(Exception, match="snp_measurements"):
        load_session(POLICY.replace("snp_measurements", "snp_measurement"))
