"""The attestation decision, table-driven: each attack fails with its reason named."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister.attest import (
    VERIFIERS,
    VerifiedClaims,
    _evidence,
    canonical_json,
    generate_ephemeral_key,
    public_key_bytes_of,
    report_data,
    simulation,
)
from cloister.cas._decide import (
    NONCE_REASON,
    REFUSAL,
    REFUSAL_DETAILS,
    Decision,
    decide,
    refusal,
)
from cloister.policy import AttestationSecurity, AttestationVariant, Service, Signer

M = "ab" * 32
OTHER_M = "cd" * 32
TAG = "12" * 16
LAS_KEY = Ed25519PrivateKey.generate()
ATTACKER_KEY = Ed25519PrivateKey.generate()
PLATFORM = _evidence.platform_id(_evidence.spki_der(LAS_KEY.public_key()))
NOT_TOLERATED = ("evidence type simulation not tolerated: add debug-mode to "
                 "security.attestation.tolerate")


@dataclass
class Case:
    """One attestation attempt; every field defaults to the honest, accepted one."""

    measurement: str = M
    fspf_tag: str | None = TAG
    key: Ed25519PrivateKey = LAS_KEY
    bind_to_other_key: bool = False
    nonce_ok: bool | str = True
    tamper: Callable[[dict[str, Any]], None] | None = None
    service: dict[str, Any] = field(default_factory=dict)
    security: dict[str, Any] = field(default_factory=dict)
    uid: int = 1000
    gid: int = 1000
    enrolled: frozenset[str] = frozenset()

    def run(self) -> Decision:
        nonce = os.urandom(32)
        ephemeral = public_key_bytes_of(generate_ephemeral_key())
        bound = public_key_bytes_of(generate_ephemeral_key()) if self.bind_to_other_key \
            else ephemeral
        evidence = simulation.sign_simulation(
            self.key, measurement=self.measurement, fspf_tag=self.fspf_tag,
            report_data_hex=report_data(nonce, bound).hex(), uid=self.uid, gid=self.gid,
        )
        if self.tamper is not None:
            obj = json.loads(evidence)
            self.tamper(obj)
            evidence = canonical_json(obj)
        service = Service(**{
            "name": "api",
            "attestation": (AttestationVariant(mrenclaves=(M,)),),
            "platforms": (PLATFORM,),
            "fspf_tag": TAG,
            **self.service,
        })
        security = AttestationSecurity(**{"tolerate": frozenset({"debug-mode"}),
                                          **self.security})
        return decide(service=service, attestation=security, evidence=evidence, nonce=nonce,
                      nonce_ok=self.nonce_ok, ephemeral_public_key=ephemeral,
                      enrolled_platforms=self.enrolled)


def _flip_signature(obj: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(obj["signature"]))
    sig[10] ^= 0x80
    obj["signature"] = base64.b64encode(bytes(sig)).decode()


def _forge_platform_id(obj: dict[str, Any]) -> None:
    """The attacker signs with its own key but claims the honest platform id."""
    obj["claims"]["platform_id"] = PLATFORM
    obj["signature"] = base64.b64encode(ATTACKER_KEY.sign(
        simulation.SIGNATURE_CONTEXT + canonical_json(obj["claims"]))).decode()


REFUSALS: dict[str, tuple[Case, list[str]]] = {
    "measurement not listed": (
        Case(measurement=OTHER_M),
        [f"measurement {OTHER_M} not in [{M[:12]}…] of service api"]),
    "PCR pinned but simulation evidence carries none": (
        Case(security={"extensions": {"tpm_pcrs": ((7, "ab" * 32),)}}),
        ["PCR sha256:7 is pinned by security.attestation.tpm_pcrs, but simulation evidence "
         "does not carry it"]),
    "platform not listed": (
        Case(service={"platforms": ("ee" * 32,)}),
        [f"platform {PLATFORM} not in the 1 platform(s) pinned by service api"]),
    "simulation without debug-mode": (
        Case(security={"tolerate": frozenset({"outdated-tcb"})}), [NOT_TOLERATED]),
    "wrong fspf tag": (
        Case(fspf_tag="34" * 16),
        [f"evidence carries fspf tag {'34' * 16}, service api requires another fspf_tag "
         "(see its policy)"]),
    "report data bound to another key": (
        Case(bind_to_other_key=True), ["bound to another key or nonce"]),
    "tampered signature": (Case(tamper=_flip_signature), ["evidence signature is invalid"]),
    "tampered claim": (
        Case(tamper=lambda o: o["claims"].update(measurement=M.replace("a", "e"))),
        ["evidence signature is invalid"]),
    "other key claiming this platform": (
        Case(key=ATTACKER_KEY, tamper=_forge_platform_id),
        ["not the hash of the key that signed it"]),
    "valid evidence from another platform key": (
        Case(key=ATTACKER_KEY), ["not in the 1 platform(s) pinned by service api"]),
    "(a) evidence signed by a key nobody enrolled": (
        Case(key=ATTACKER_KEY, service={"platforms": ()}, enrolled=frozenset({PLATFORM})),
        ["is not enrolled: simulation evidence counts only from a quoting key the CAS knows"]),
    "mode none still needs a known quoting key": (
        Case(key=ATTACKER_KEY, service={"platforms": ()}, security={"mode": "none"}),
        ["is not enrolled"]),
    "(b) another uid than the pinned one": (
        Case(uid=65534, gid=65534, service={"uid": 1000, "gid": 1000}),
        ["the caller runs as uid 65534, service api requires uid 1000",
         "the caller runs as gid 65534, service api requires gid 1000"]),
    "nonce unknown, expired or used": (Case(nonce_ok=False), [NONCE_REASON]),
    "nonce reason from the store": (Case(nonce_ok="nonce expired 31 s ago"),
                                    ["nonce expired 31 s ago"]),
    "signer-only variant": (
        Case(service={"attestation": (AttestationVariant(signer=Signer(mrsigner="ff" * 32)),)}),
        ["attestation variant 1 requires signer ffffffffffff…, which simulation evidence "
         "does not carry"]),
    "service lists no measurement": (
        Case(service={"attestation": ()}), ["service api lists no measurement"]),
    "maa mode": (Case(security={"mode": "maa"}), ["mode maa is not supported"]),
    "all at once": (
        Case(measurement=OTHER_M, fspf_tag="34" * 16, nonce_ok=False,
             service={"platforms": ("ee" * 32,)}, security={"tolerate": frozenset()}),
        [NONCE_REASON, f"measurement {OTHER_M} not in", f"platform {PLATFORM} not in",
         "requires another fspf_tag", NOT_TOLERATED]),
    "mode none still needs the nonce and the binding": (
        Case(bind_to_other_key=True, nonce_ok=False, security={"mode": "none"}),
        [NONCE_REASON, "bound to another key"]),
    "mode none still needs authentic evidence": (
        Case(tamper=_flip_signature, security={"mode": "none"}), ["signature is invalid"]),
    "mode none still checks the fspf tag": (
        Case(fspf_tag="34" * 16, security={"mode": "none"}), ["requires another fspf_tag"]),
}


@pytest.mark.parametrize(("case", "expected"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_name_every_reason(case: Case, expected: list[str]) -> None:
    decision = case.run()
    assert not decision.accepted
    assert len(decision.reasons) == len(expected), decision.reasons
    for reason, fragment in zip(decision.reasons, expected, strict=True):
        assert fragment in reason, (fragment, decision.reasons)


ACCEPTED: dict[str, Case] = {
    "honest simulation with debug-mode": Case(),
    "any listed variant": Case(measurement=OTHER_M, service={"attestation": (
        AttestationVariant(mrenclaves=(M,)), AttestationVariant(mrenclaves=(OTHER_M.upper(),)))}),
    "no platforms pinned, the platform enrolled": Case(service={"platforms": ()},
                                                       enrolled=frozenset({PLATFORM})),
    "uid and gid as pinned": Case(service={"uid": 1000, "gid": 1000}),
    "no fspf tag required": Case(fspf_tag=None, service={"fspf_tag": None}),
    # the runtime checks the tree against the released tag itself
    "evidence without a tag where the policy has one": Case(fspf_tag=None),
    "mode none skips measurement, uid and evidence type": Case(
        measurement=OTHER_M, service={"uid": 0},
        security={"mode": "none", "tolerate": frozenset()}),
}


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(case: Case) -> None:
    decision = case.run()
    assert decision == Decision(accepted=True, reasons=[], claims=decision.claims)
    assert decision.claims is not None and decision.claims.evidence_type == "simulation"


@pytest.mark.parametrize("evidence", [b"", b"garbage", b'{"format": "x"}'])
def test_malformed_evidence_is_a_reason(evidence: bytes) -> None:
    decision = decide(service=Service(name="api"), attestation=AttestationSecurity(),
                      evidence=evidence, nonce=b"n", nonce_ok=True, ephemeral_public_key=b"k")
    assert not decision.accepted and decision.reasons[0].startswith("evidence is malformed")


class _TpmStub:
    """A plug-in verifier for a new evidence type, registered without touching decide()."""

    evidence_type = "tpm-test"

    def __init__(self, claims: VerifiedClaims | None = None, crash: bool = False) -> None:
        self.claims, self.crash = claims, crash

    def verify(self, evidence: bytes, *, expected_report_data: bytes,
               **context: Any) -> VerifiedClaims | list[str]:
        if self.crash:
            raise RuntimeError("plug-in bug")
        assert self.claims is not None
        return replace(self.claims, report_data=expected_report_data)


def _tpm_decision(verifier: _TpmStub, **security: Any) -> Decision:
    evidence = canonical_json({"format": "cloister-evidence", "version": 1, "type": "tpm-test"})
    return decide(
        service=Service(name="api", attestation=(AttestationVariant(mrenclaves=(M,)),)),
        attestation=AttestationSecurity(**security), evidence=evidence, nonce=b"n",
        nonce_ok=True, ephemeral_public_key=b"k",
        verifiers={**VERIFIERS, "tpm-test": verifier},
    )


def test_plugged_in_hardware_type_needs_no_toleration() -> None:
    claims = VerifiedClaims(evidence_type="tpm-test", measurement=M, platform_id="00" * 32,
                            report_data=b"")
    assert _tpm_decision(_TpmStub(claims)).accepted
    unknown = decide(service=Service(name="api"), attestation=AttestationSecurity(),
                     evidence=canonical_json({"format": "cloister-evidence", "version": 1,
                                              "type": "tpm-test"}),
                     nonce=b"n", nonce_ok=True, ephemeral_public_key=b"k")
    assert unknown.reasons == ["evidence type 'tpm-test' has no verifier on this CAS "
                               f"(known: {', '.join(sorted(VERIFIERS))})"]
    assert {"simulation", "tpm"} <= set(VERIFIERS)


def _pin_claims() -> VerifiedClaims:
    return VerifiedClaims(evidence_type="tpm-test", measurement=M, platform_id="0d" * 32,
                          report_data=b"", requires_platform_pin=True)


def test_evidence_vouched_for_only_by_a_pin_needs_platforms() -> None:
    """A self-carried key (TPM without EK chain) proves nothing unless the CAS knows it."""
    assert _tpm_decision(_TpmStub(_pin_claims())).reasons == [
        f"platform {'0d' * 32} is not enrolled: tpm-test evidence counts only from a quoting "
        f"key the CAS knows; check that this is your LAS, then `cloister platform enroll "
        f"{'0d' * 32}` as the session's owner, or list it under platforms of service api"]


def test_evidence_vouched_for_by_a_listed_pin_is_accepted() -> None:
    evidence = canonical_json({"format": "cloister-evidence", "version": 1, "type": "tpm-test"})
    decision = decide(
        service=Service(name="api", attestation=(AttestationVariant(mrenclaves=(M,)),),
                        platforms=("0d" * 32,)),
        attestation=AttestationSecurity(), evidence=evidence, nonce=b"n", nonce_ok=True,
        ephemeral_public_key=b"k", verifiers={**VERIFIERS, "tpm-test": _TpmStub(_pin_claims())},
    )
    assert decision.accepted, decision.reasons


def test_crashing_plug_in_refuses() -> None:
    decision = _tpm_decision(_TpmStub(crash=True))
    assert decision.reasons == ["the tpm-test verifier failed on this evidence"]


def test_plug_in_returning_another_type_refuses() -> None:
    claims = VerifiedClaims(evidence_type="simulation", measurement=M, platform_id="00" * 32,
                            report_data=b"")
    assert "returned claims of type simulation" in _tpm_decision(_TpmStub(claims)).reasons[0]


def test_refusal_as_error_lists_every_reason() -> None:
    """What the attestation endpoint raises (``_attestation._refuse`` calls ``refusal``):
    to an anonymous caller the same answer whatever the reasons; to an attested one (its
    gates: OTP, access token, singleton lease) every reason."""
    decision = REFUSALS["all at once"][0].run()
    anonymous = [refusal(cid, reasons) for cid, reasons in (
        ("patients/api", decision.reasons), ("other/svc", decision.reasons[:1]),
        ("patients/api", []))]
    assert {(e.message, tuple(e.details), e.code) for e in anonymous} == {
        (REFUSAL, tuple(REFUSAL_DETAILS), "attestation_failed")}
    assert all(r not in " ".join(anonymous[0].lines()) for r in decision.reasons)
    err = refusal("patients/api", decision.reasons, attested=True)
    assert err.message == "attestation of patients/api refused (5 reasons)"
    assert err.details == decision.reasons and err.code == "attestation_failed"
    one = refusal("patients/api", decision.reasons[:1], attested=True)
    assert one.message == f"attestation of patients/api refused: {decision.reasons[0]}"
    assert one.details == []

