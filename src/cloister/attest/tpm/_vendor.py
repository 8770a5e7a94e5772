"""TPM evidence with a vendor AK chain: Google's vTPM attestation (go-tpm-tools protobuf).

A Shielded/Confidential VM's vTPM has an attestation key certificate issued
by Google (``tpm_ek_v1_cloud_host-signer`` → ``tpm_ek_v1_cloud_host_root``).
That chain to the pinned root replaces the enrolled ``platforms:`` pin as
the trust anchor.  The evidence is go-tpm-tools' ``Attestation`` message:
field 1 the AK's TPMT_PUBLIC, 2 quotes (1 TPMS_ATTEST, 2 TPMT_SIGNATURE,
3 PCRs {1 hash algorithm, 2 entries {1 index, 2 value}}), 3 the event log,
6 the AK certificate (DER), 7 intermediate certificates.

The verifier checks, collecting every failure: (1) the message parses;
(2) the AK certificate chains to the pinned Google root through a shipped
or carried intermediate, valid at the given time; (3) its key is the AK;
(4) every quote is signed by the AK (RSASSA-PKCS1-v1_5 or ECDSA, SHA-256),
is a TPM-generated quote and (5) its PCR digest matches its PCR values.
Claims: the SHA-256 PCRs and the quotes' qualifying data (the nonce).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.resources
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cloister import errors
from cloister.attest import _evidence, _x509
from cloister.attest._plugin import VerifiedClaims
from cloister.attest.tpm import _format as fmt

#: SHA-256 of Google's vTPM EK/AK root (tpm_ek_v1_cloud_host_root, DER)
PINNED_ROOTS = frozenset({"9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf"})
TPM_ALG_RSA = 0x0001
TPM_ALG_RSASSA = 0x0014
_HASH_IDS = {4: "sha1", 11: "sha256", 12: "sha384"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise errors.EvidenceError("vTPM attestation protobuf is truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` of a protobuf message (varints and length-delimited only)."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise errors.EvidenceError("vTPM attestation protobuf is truncated")
            out.append((number, data[pos:pos + length]))
            pos += length
        else:
            raise errors.EvidenceError(f"vTPM attestation protobuf has wire type {wire}")
    return out


@dataclass
class _Quote:
    attest: bytes = b""
    signature: bytes = b""
    bank: str = ""
    pcrs: dict[int, bytes] = field(default_factory=dict)


@dataclass
class GceAttestation:
    ak_public: bytes = b""
    quotes: list[_Quote] = field(default_factory=list)
    ak_cert: bytes = b""
    intermediates: list[bytes] = field(default_factory=list)


def _quote(data: bytes) -> _Quote:
    quote = _Quote()
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            quote.attest = value
        elif number == 2 and isinstance(value, bytes):
            quote.signature = value
        elif number == 3 and isinstance(value, bytes):
            for inner, item in _fields(value):
                if inner == 1 and isinstance(item, int):
                    quote.bank = _HASH_IDS.get(item, str(item))
                elif inner == 2 and isinstance(item, bytes):
                    entry = dict(_fields(item))
                    index, digest = entry.get(1, 0), entry.get(2, b"")
                    if isinstance(index, int) and isinstance(digest, bytes):
                        quote.pcrs[index] = digest
    return quote


def parse_attestation(data: bytes) -> GceAttestation:
    """go-tpm-tools' ``Attestation`` message; :class:`errors.EvidenceError` if it is not one."""
    parsed = GceAttestation()
    for number, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            parsed.ak_public = value
        elif number == 2:
            parsed.quotes.append(_quote(value))
        elif number == 6:
            parsed.ak_cert = value
        elif number == 7:
            parsed.intermediates.append(value)
    if not parsed.ak_public or not parsed.quotes or not parsed.ak_cert:
        raise errors.EvidenceError("vTPM attestation lacks an AK, quotes or an AK certificate")
    return parsed


def rsa_ak(data: bytes) -> rsa.RSAPublicKey:
    """The RSA key of a TPMT_PUBLIC (type RSA)."""
    try:
        type_, _, _ = struct.unpack_from(">HHI", data, 0)
        pos = 8
        pos += 2 + struct.unpack_from(">H", data, pos)[0]  # authPolicy
        symmetric, = struct.unpack_from(">H", data, pos)
        pos += 2 if symmetric == fmt.TPM_ALG_NULL else 6
        scheme, = struct.unpack_from(">H", data, pos)
        pos += 2 if scheme == fmt.TPM_ALG_NULL else 4
        _, exponent = struct.unpack_from(">HI", data, pos)
        pos += 6
        size, = struct.unpack_from(">H", data, pos)
        modulus = data[pos + 2:pos + 2 + size]
    except struct.error:
        raise errors.EvidenceError("vTPM AK public area is truncated") from None
    if type_ != TPM_ALG_RSA or len(modulus) != size:
        raise errors.EvidenceError("vTPM AK is not an RSA key")
    return rsa.RSAPublicNumbers(exponent or 65537, int.from_bytes(modulus, "big")).public_key()


@functools.cache
def shipped_certificates() -> tuple[x509.Certificate, ...]:
    """The vendor roots and intermediates shipped in ``roots/`` (read once per process)."""
    folder = importlib.resources.files("cloister.attest.tpm") / "roots"
    return tuple(c for f in sorted(folder.iterdir(), key=lambda f: f.name)
                 if f.name.endswith(".pem") for c in _x509.load_certificates(f.read_bytes()))


def _signature_ok(ak: rsa.RSAPublicKey, quote: _Quote) -> bool:
    try:
        alg, hash_alg, size = struct.unpack_from(">HHH", quote.signature, 0)
        sig = quote.signature[6:6 + size]
        if alg != TPM_ALG_RSASSA or hash_alg != fmt.TPM_ALG_SHA256:
            return False
        ak.verify(sig, quote.attest, padding.PKCS1v15(), hashes.SHA256())
    except (struct.error, InvalidSignature):
        return False
    return True


def verify_attestation(data: bytes, now: datetime | None, certificates: Sequence[
                       x509.Certificate]) -> VerifiedClaims | list[str]:
    """Steps in the module docstring; ``certificates`` are the pinned root and intermediates."""
    # (1) the message parses
    try:
        parsed = parse_attestation(data)
        ak = rsa_ak(parsed.ak_public)
    except errors.EvidenceError as exc:
        return [_evidence.message(exc)]
    if now is None:
        return ["no verification time given: the AK certificate cannot be checked"]
    reasons: list[str] = []
    # (2) the AK certificate chains to a pinned root
    ak_cert = _x509.load_certificate(parsed.ak_cert)
    if ak_cert is None:
        return ["vTPM AK certificate is not a certificate"]
    roots = [c for c in certificates if _x509.fingerprint(c) in PINNED_ROOTS]
    carried = [c for raw in parsed.intermediates if (c := _x509.load_certificate(raw))]
    issuer = next((c for c in [*certificates, *carried] if _x509.issued_by(ak_cert, c)), None)
    root = None if issuer is None else next(
        (r for r in roots if _x509.issued_by(issuer, r)), None)
    if issuer is None or root is None:
        reasons.append("vTPM AK certificate does not chain to a pinned vendor root")
    else:
        reasons += _x509.chain_problems([(ak_cert, "AK certificate"),
                                         (issuer, "AK CA")], root, now)
    # (3) the certificate is the AK's
    if ak_cert.public_key() != ak:
        reasons.append("vTPM AK certificate certifies another key than the quoting AK")
    pcrs: dict[int, str] = {}
    nonces = set()
    for quote in parsed.quotes:
        # (4) signed by the AK, a TPM quote; (5) its PCR digest
        if not _signature_ok(ak, quote):
            reasons.append(f"vTPM quote over the {quote.bank} bank is not signed by the AK")
        try:
            attest = fmt.parse_attest(quote.attest)
        except errors.EvidenceError as exc:
            reasons.append(_evidence.message(exc))
            continue
        nonces.add(attest.extra_data)
        selected = [p for _, ps in attest.selection for p in ps]
        # the digest is by the signing scheme's hash (SHA-256), whatever the bank
        digest = hashlib.sha256(b"".join(quote.pcrs.get(p, b"") for p in selected)).digest()
        if not hmac.compare_digest(digest, attest.pcr_digest):
            reasons.append(f"vTPM PCR values of the {quote.bank} bank do not match its quote")
        if quote.bank == "sha256":
            pcrs = {p: quote.pcrs[p].hex() for p in selected if p in quote.pcrs}
    if len(nonces) != 1:
        reasons.append("vTPM quotes carry different qualifying data")
    if reasons:
        return reasons
    key = ak_cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return VerifiedClaims(
        evidence_type=fmt.TPM,
        measurement="",
        platform_id=_evidence.platform_id(_evidence.spki_der(key)),
        report_data=nonces.pop(),
        pcrs=MappingProxyType(pcrs),
        type_claims=MappingProxyType({"ak_certificate_issuer": _x509.name(issuer) if issuer
                                      else "", "vendor_chain": True}),
    )
