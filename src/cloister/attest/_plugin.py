"""What an evidence-type plug-in is: its verifier, claims, policy keys and quoter.

An evidence type is one subpackage of :mod:`cloister.attest` (``simulation``,
``tpm``, …) exporting ``EVIDENCE_TYPE``, an :class:`EvidenceType`.  The
registry (:mod:`._registry`) lists them; the attestation decision
(:mod:`cloister.cas._decide`) and the LAS (:mod:`._las`) only ever see the
interfaces below, so adding a type touches neither.

* :class:`Verifier` — pure: evidence bytes, the expected report data, the
  time and the collateral are inputs; no I/O, no clock.  It returns the
  :class:`VerifiedClaims` it authenticated or every reason it could not.
* :class:`PolicyKey` — a cloister extension key under
  ``security.attestation`` (e.g. ``tpm_pcrs``): how its YAML value is
  validated, and how it is checked against verified claims.
* :class:`Quoter` — the LAS side: produces evidence of the type for the
  claims a local caller asks to have quoted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class VerifiedClaims:
    """What a verifier authenticated.  Hex fields are lower-case.

    ``report_data`` is the 32 bytes the evidence binds (the decision compares
    it with ``SHA256(nonce ‖ ephemeral public key)``).  ``measurement`` is
    the runtime measurement (what ``mrenclaves`` lists; ``cloister
    measure``).  ``needs_tolerations`` maps each
    ``security.attestation.tolerate`` entry this evidence requires to why
    (e.g. ``{"debug-mode": "evidence type simulation"}``).  The
    ``mrsigner``/``isvprodid``/``isvsvn`` factors are set only by evidence
    types that carry a signer identity (SGX).  ``type_claims`` holds what
    only this type knows (launch measurement, TCB, chip id, RTMRs…) as JSON
    values: policy keys of the type check them, ``cloister attest verify``
    prints them.
    """

    evidence_type: str
    measurement: str
    platform_id: str
    report_data: bytes
    fspf_tag: str | None = None
    mrsigner: str | None = None
    isvprodid: int | None = None
    isvsvn: int | None = None
    needs_tolerations: Mapping[str, str] = field(default_factory=_empty)
    #: True when nothing but the CAS's knowledge of the key ties it to a real platform
    #: (a LAS's software key; a TPM quote without a verified EK chain): such evidence is
    #: refused unless its platform id is in the service's ``platforms`` or enrolled on
    #: the CAS by the session's owner (:func:`cloister.attest.platform_reason`)
    requires_platform_pin: bool = False
    #: policy keys of which at least one must be set for this evidence to count (a CPU
    #: signs any VM's launch: without a pinned reference measurement any VM would pass)
    requires_pins: tuple[str, ...] = ()
    #: authenticated SHA-256 PCR values (index → 64 hex) for evidence types that quote PCRs
    pcrs: Mapping[int, str] = field(default_factory=_empty)
    type_claims: Mapping[str, Any] = field(default_factory=_empty)
    #: the caller's uid and gid as the LAS saw them (kernel peer credentials); None for
    #: evidence types that carry no process identity
    uid: int | None = None
    gid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The claims as one JSON object (what ``cloister attest verify`` prints)."""
        return {
            "evidence_type": self.evidence_type,
            "measurement": self.measurement,
            "platform_id": self.platform_id,
            "report_data": self.report_data.hex(),
            "fspf_tag": self.fspf_tag,
            "needs_tolerations": dict(self.needs_tolerations),
            "pcrs": {str(k): v for k, v in sorted(self.pcrs.items())},
            "uid": self.uid,
            "gid": self.gid,
            **dict(self.type_claims),
        }


@dataclass(frozen=True)
class Collateral:
    """Files a verifier may need beyond the evidence (certificates, TCB info, CRLs).

    Loaded by the caller (:func:`load_collateral`), so verifiers stay free of
    I/O; ``files`` maps a relative path (``/``-separated) to its bytes.
    """

    files: Mapping[str, bytes] = field(default_factory=_empty)

    def get(self, name: str) -> bytes | None:
        return self.files.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.files))


NO_COLLATERAL = Collateral()
#: collateral directories larger than this are refused (it is read into memory)
MAX_COLLATERAL_BYTES = 16 * 1024 * 1024


@runtime_checkable
class Verifier(Protocol):
    """Checks one evidence type.  Must be pure and must not raise on hostile input.

    ``expected_report_data`` is the value the relying party demands; a
    verifier whose evidence carries report data in clear returns it in the
    claims and leaves the comparison to the decision's binding step.  ``now``
    is the time to check validity periods at (None: a type that needs it
    refuses); ``collateral`` what the caller could provide.
    """

    evidence_type: str

    def verify(
        self,
        evidence: bytes,
        *,
        expected_report_data: bytes,
        now: datetime | None = None,
        collateral: Collateral = NO_COLLATERAL,
    ) -> VerifiedClaims | list[str]: ...


@dataclass(frozen=True)
class PolicyKey:
    """A cloister extension key under ``security.attestation``, owned by a plug-in.

    ``parse`` turns the key's plain YAML value into the value the policy
    keeps, raising :class:`ValueError` with a user-facing message when it is
    invalid.  ``check`` returns why verified claims fail that value (empty
    when they pass; evidence the key does not concern passes unless the key
    says otherwise).
    """

    name: str
    parse: Callable[[Any], Any]
    check: Callable[[Any, VerifiedClaims], list[str]]
    doc: str = ""


class Quoter(Protocol):
    """The LAS side of an evidence type: quotes what the LAS measured of a local caller
    (:mod:`cloister.attest._caller`), with the caller's uid and gid."""

    evidence_type: str
    platform_id: str
    public_key_pem: str

    def quote(self, *, measurement: str, fspf_tag: str | None, report_data_hex: str,
              uid: int, gid: int) -> bytes: ...


#: ``(LAS state directory, options from the command line) → quoter``
QuoterFactory = Callable[[Path, Mapping[str, str]], Quoter]


@dataclass(frozen=True)
class EvidenceType:
    """One evidence type: what each plug-in subpackage exports as ``EVIDENCE_TYPE``."""

    name: str
    verifier: Verifier
    policy_keys: tuple[PolicyKey, ...] = ()
    quoter: QuoterFactory | None = None
    #: one line: what the evidence proves, against whom
    summary: str = ""
