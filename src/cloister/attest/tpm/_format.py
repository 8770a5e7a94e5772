"""TPM 2.0 structures and the ``tpm`` evidence envelope — pure parsing, no TPM needed.

Evidence (canonical JSON, see :mod:`._evidence`)::

    {"format": "cloister-evidence", "version": 1, "type": "tpm",
     "claims": {"type": "tpm", "measurement", "fspf_tag", "report_data", "platform_id",
                "uid", "gid"},
     "attest": "<base64 TPMS_ATTEST as the TPM signed it>",
     "signature": "<base64 TPMT_SIGNATURE (ECDSA/SHA-256)>",
     "ak_public": "<base64 TPMT_PUBLIC of the attestation key>",
     "pcrs": {"sha256": {"0": "<hex>", ...}},
     "ek_certificate": "<base64 DER>" | null}

The TPM signs ``TPMS_ATTEST`` (TPM2_Quote) whose ``extraData`` is
:func:`qualifying_data` of the claims, so the claims are bound to the quote
although they travel in clear.  ``platform_id`` is the SHA-256 hex of the
AK's DER SubjectPublicKeyInfo (the same rule as for simulation keys).

All integers in TPM structures are big-endian; every parser here consumes
its input exactly and raises :class:`errors.EvidenceError` otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cloister import errors
from cloister.attest import _evidence

TPM = "tpm"
TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_SHA256 = 0x000B
TPM_ALG_ECC = 0x0023
TPM_ALG_ECDSA = 0x0018
TPM_ALG_NULL = 0x0010
TPM_ECC_NIST_P256 = 0x0003
TPM_RH_ENDORSEMENT = 0x4000000B
#: TPMA_OBJECT bits an attestation key must have
ATTR_FIXED_TPM = 1 << 1
ATTR_FIXED_PARENT = 1 << 4
ATTR_SENSITIVE_DATA_ORIGIN = 1 << 5
ATTR_RESTRICTED = 1 << 16
ATTR_DECRYPT = 1 << 17
ATTR_SIGN = 1 << 18
AK_REQUIRED_ATTRIBUTES = (ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN
                          | ATTR_RESTRICTED | ATTR_SIGN)
QUALIFYING_CONTEXT = b"cloister-tpm-quote-v1\0"
#: bank name in evidence ↔ TPM_ALG_ID; only SHA-256 PCR banks are quoted and verified
BANKS = {"sha256": TPM_ALG_SHA256}
_BANK_NAMES = {v: k for k, v in BANKS.items()}
_TPM_KEYS = frozenset({"format", "version", "type", "claims", "attest", "signature",
                       "ak_public", "pcrs", "ek_certificate"})


class _Reader:
    """Cursor over TPM marshalled bytes; every read is bounds-checked."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise errors.EvidenceError(f"{self.what} is truncated at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise errors.EvidenceError(
                f"{self.what} has {len(self.data) - self.pos} trailing bytes")


@dataclass(frozen=True)
class Quote:
    """A parsed TPMS_ATTEST of type quote.  ``selection`` is ``((alg, (pcr, ...)), ...)``."""

    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selection: tuple[tuple[int, tuple[int, ...]], ...]
    pcr_digest: bytes


def parse_attest(data: bytes) -> Quote:
    """TPMS_ATTEST → :class:`Quote`; refuses another magic, type or trailing bytes."""
    r = _Reader(data, "TPMS_ATTEST")
    magic, type_ = r.u32(), r.u16()
    if magic != TPM_GENERATED_VALUE:
        raise errors.EvidenceError(f"TPMS_ATTEST magic is {magic:#010x}, not TPM_GENERATED_VALUE "
                                   "(not produced by a TPM)")
    if type_ != TPM_ST_ATTEST_QUOTE:
        raise errors.EvidenceError(f"TPMS_ATTEST type is {type_:#06x}, not a quote (0x8018)")
    signer, extra = r.tpm2b(), r.tpm2b()
    clock, reset, restart, safe = r.u64(), r.u32(), r.u32(), r.u8()
    firmware = r.u64()
    selection = []
    for _ in range(r.u32()):
        alg, size = r.u16(), r.u8()
        bitmap = r.take(size)
        selection.append((alg, tuple(i for i in range(8 * size) if bitmap[i // 8] >> (i % 8) & 1)))
    digest = r.tpm2b()
    r.end()
    return Quote(signer, extra, clock, reset, restart, bool(safe), firmware,
                 tuple(selection), digest)


def parse_signature(data: bytes) -> tuple[int, int]:
    """TPMT_SIGNATURE (ECDSA with SHA-256) → ``(r, s)``."""
    rd = _Reader(data, "TPMT_SIGNATURE")
    alg, hash_alg = rd.u16(), rd.u16()
    if alg != TPM_ALG_ECDSA or hash_alg != TPM_ALG_SHA256:
        raise errors.EvidenceError(f"signature scheme {alg:#06x}/{hash_alg:#06x} is not "
                                   "ECDSA/SHA-256")
    r_int, s_int = int.from_bytes(rd.tpm2b(), "big"), int.from_bytes(rd.tpm2b(), "big")
    rd.end()
    return r_int, s_int


@dataclass(frozen=True)
class AkPublic:
    """A parsed TPMT_PUBLIC of an ECC P-256 key."""

    name_alg: int
    attributes: int
    key: ec.EllipticCurvePublicKey
    #: ``nameAlg ‖ H(TPMT_PUBLIC)`` — the key's TPM name
    name: bytes


def parse_ak_public(data: bytes) -> AkPublic:
    """TPMT_PUBLIC of an ECC P-256 signing key → :class:`AkPublic`."""
    r = _Reader(data, "TPMT_PUBLIC")
    type_, name_alg, attributes = r.u16(), r.u16(), r.u32()
    if type_ != TPM_ALG_ECC or name_alg != TPM_ALG_SHA256:
        raise errors.EvidenceError("attestation key is not an ECC key with a SHA-256 name")
    r.tpm2b()  # authPolicy
    if r.u16() != TPM_ALG_NULL:  # symmetric: a signing key has none
        raise errors.EvidenceError("attestation key has a symmetric algorithm (not a signing key)")
    scheme = r.u16()
    scheme_hash = r.u16() if scheme != TPM_ALG_NULL else TPM_ALG_NULL
    if (scheme, scheme_hash) != (TPM_ALG_ECDSA, TPM_ALG_SHA256):
        raise errors.EvidenceError("attestation key's scheme is not ECDSA/SHA-256")
    if r.u16() != TPM_ECC_NIST_P256:
        raise errors.EvidenceError("attestation key is not on curve NIST P-256")
    if r.u16() != TPM_ALG_NULL:
        r.u16()  # kdf hash; a signing key has no KDF but parse it to report trailing bytes
    x, y = r.tpm2b(), r.tpm2b()
    r.end()
    try:
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                            ec.SECP256R1()).public_key()
    except ValueError:
        raise errors.EvidenceError("attestation key's point is not on curve P-256") from None
    name = struct.pack(">H", name_alg) + hashlib.sha256(data).digest()
    return AkPublic(name_alg, attributes, key, name)


def qualified_name_under_endorsement(name: bytes) -> bytes:
    """Qualified name of a primary key in the endorsement hierarchy (the quote's signer)."""
    return struct.pack(">H", TPM_ALG_SHA256) + hashlib.sha256(
        struct.pack(">I", TPM_RH_ENDORSEMENT) + name).digest()


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def qualifying_data(measurement: str, fspf_tag: str | None, report_data_hex: str,
                    uid: int | None = None, gid: int | None = None) -> bytes:
    """``SHA256(context ‖ lp("tpm") ‖ lp(measurement) ‖ tag ‖ lp(report data) ‖ u32(uid) ‖
    u32(gid))`` — 32 bytes.

    ``lp(x)`` is a 4-byte big-endian length then ``x``; the fspf tag is
    ``0x00`` when absent and ``0x01 ‖ lp(tag)`` when present, so no two claim
    sets share an encoding.  ``uid``/``gid`` are the caller's as the LAS saw
    them (left out when not given: an ``az-snp-vtpm`` envelope carries none).
    Inputs must already be well-formed.
    """
    tag = b"\0" if fspf_tag is None else b"\1" + _lp(bytes.fromhex(fspf_tag))
    return hashlib.sha256(QUALIFYING_CONTEXT + _lp(TPM.encode()) + _lp(bytes.fromhex(measurement))
                          + tag + _lp(bytes.fromhex(report_data_hex))
                          + (b"" if uid is None or gid is None
                             else struct.pack(">II", uid, gid))).digest()


def pcr_digest(selection: tuple[tuple[int, tuple[int, ...]], ...],
               values: dict[str, dict[str, str]]) -> bytes:
    """SHA-256 over the PCR values in selection order (banks in order, PCRs ascending)."""
    h = hashlib.sha256()
    for alg, pcrs in selection:
        bank = values[_BANK_NAMES[alg]]
        for pcr in pcrs:
            h.update(bytes.fromhex(bank[str(pcr)]))
    return h.digest()


def selection_problems(selection: tuple[tuple[int, tuple[int, ...]], ...],
                       values: Any) -> list[str]:
    """Why the reported ``pcrs`` do not list exactly the quoted selection (empty if they do)."""
    if not isinstance(values, dict):
        return ["evidence pcrs must be an object {bank: {pcr: hex}}"]
    wanted: dict[str, set[str]] = {}
    for alg, pcrs in selection:
        if alg not in _BANK_NAMES:
            return [f"quote selects PCR bank {alg:#06x}; only sha256 is supported"]
        wanted.setdefault(_BANK_NAMES[alg], set()).update(str(p) for p in pcrs)
    if set(values) != set(wanted):
        return [f"evidence pcrs banks {sorted(values)} differ from the quoted {sorted(wanted)}"]
    problems = []
    for bank, indices in wanted.items():
        got = values[bank]
        if not isinstance(got, dict) or set(got) != indices:
            problems.append(f"evidence pcrs of bank {bank} differ from the quoted selection "
                            f"{sorted(indices, key=int)}")
        elif not all(isinstance(v, str) and _evidence.HEX64.fullmatch(v) for v in got.values()):
            problems.append(f"evidence pcrs of bank {bank} must be 64 lower-case hex digits")
    return problems


def build_evidence(*, claims: dict[str, Any], attest: bytes, signature: bytes, ak_public: bytes,
                   pcrs: dict[str, dict[str, str]], ek_certificate: bytes | None) -> bytes:
    """The canonical ``tpm`` evidence envelope."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return _evidence.canonical_json({
        "format": _evidence.FORMAT, "version": _evidence.VERSION, "type": TPM,
        "claims": claims, "attest": b64(attest), "signature": b64(signature),
        "ak_public": b64(ak_public), "pcrs": pcrs,
        "ek_certificate": None if ek_certificate is None else b64(ek_certificate),
    })


@dataclass(frozen=True)
class TpmEvidence:
    """The unauthenticated parts of ``tpm`` evidence, shape-checked."""

    claims: dict[str, Any]
    attest: bytes
    signature: bytes
    ak_public: bytes
    pcrs: Any
    ek_certificate: bytes | None


def parse_evidence(evidence: bytes) -> TpmEvidence:
    """Split ``tpm`` evidence into its parts; nothing here is authenticated."""
    obj = _evidence.parse_typed(evidence, TPM, _TPM_KEYS)
    claims = obj["claims"]
    try:
        parts = [base64.b64decode(obj[k], validate=True)
                 for k in ("attest", "signature", "ak_public")]
        ek = obj["ek_certificate"]
        ek_der = None if ek is None else base64.b64decode(ek, validate=True)
    except (TypeError, binascii.Error):
        raise errors.EvidenceError("tpm evidence attest, signature, ak_public or "
                                   "ek_certificate is not base64") from None
    return TpmEvidence(claims, parts[0], parts[1], parts[2], obj["pcrs"], ek_der)
