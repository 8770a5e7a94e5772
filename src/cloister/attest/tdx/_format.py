"""Intel TDX quotes (versions 4 and 5) and the envelope — pure parsing.

Layout (Intel TDX DCAP quote library; little-endian)::

    header (48)   version u16, attestation key type u16 (2: ECDSA-256), TEE type u32
                  (0x81: TDX), QE SVN u16, PCE SVN u16, QE vendor id 16, user data 20
    v5 only       body type u16 (2: TD report 1.0, 3: TD report 1.5), body size u32
    TD report     TEE TCB SVN 16, MRSEAM 48, MRSIGNERSEAM 48, SEAM attributes 8,
                  TD attributes 8, XFAM 8, MRTD 48, MRCONFIGID 48, MROWNER 48,
                  MROWNERCONFIG 48, RTMR0..3 4 x 48, REPORTDATA 64
                  (1.5 adds TEE TCB SVN 2 (16) and MRSERVICETD (48))
    u32           signature data length, then:
    signature     ECDSA P-256 r‖s (64, big-endian) over header ‖ body
    attest key    P-256 x‖y (64)
    cert data     type u16 (6: QE report certification data), size u32, then
                  QE report (384, an SGX report body), its signature by the PCK key (64),
                  QE authentication data (u16 size + bytes), and nested certification
                  data (type 5: the PCK certificate chain, PEM)

A quote can carry trailing bytes after the declared length: they are ignored
(not signed).  cloister's envelope::

    {"format": "cloister-evidence", "version": 1, "type": "tdx",
     "claims": {…runtime claims…}, "quote": "<base64>"}
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

from cloister import errors
from cloister.attest import _evidence

TDX = "tdx"
HEADER_SIZE = 48
TD_REPORT_10 = 584
TD_REPORT_15 = 648
QE_REPORT_SIZE = 384
ATT_KEY_ECDSA_P256 = 2
TEE_TDX = 0x81
CERT_QE_REPORT = 6
CERT_PCK_CHAIN = 5
TD_ATTR_DEBUG = 1
_KEYS = frozenset({"format", "version", "type", "claims", "quote"})


class _Cursor:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise errors.EvidenceError(f"TDX quote is truncated in its {what}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u16(self, what: str) -> int:
        return int(struct.unpack("<H", self.take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])


@dataclass(frozen=True)
class TdReport:
    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes

    @property
    def debug(self) -> bool:
        return bool(int.from_bytes(self.td_attributes, "little") & TD_ATTR_DEBUG)


def _td_report(body: bytes) -> TdReport:
    c = _Cursor(body)
    f = [c.take(n, "TD report") for n in (16, 48, 48, 8, 8, 8, 48, 48, 48, 48)]
    rtmrs = (c.take(48, "RTMR0"), c.take(48, "RTMR1"), c.take(48, "RTMR2"), c.take(48, "RTMR3"))
    return TdReport(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], rtmrs,
                    c.take(64, "TD report"))


@dataclass(frozen=True)
class QeReport:
    raw: bytes
    miscselect: int
    attributes: bytes
    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    report_data: bytes


def _qe_report(raw: bytes) -> QeReport:
    miscselect, = struct.unpack_from("<I", raw, 16)
    isvprodid, isvsvn = struct.unpack_from("<HH", raw, 256)
    return QeReport(raw, miscselect, raw[48:64], raw[64:96], raw[128:160], isvprodid, isvsvn,
                    raw[320:384])


@dataclass(frozen=True)
class Quote:
    version: int
    signed: bytes
    td: TdReport
    signature: bytes
    attestation_key: bytes
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes
    qe_svn: int
    pce_svn: int


def parse_quote(data: bytes) -> Quote:
    """A TDX quote v4 or v5; :class:`errors.EvidenceError` if it is not one."""
    c = _Cursor(data)
    version, key_type = c.u16("header"), c.u16("header")
    tee_type = c.u32("header")
    qe_svn, pce_svn = c.u16("header"), c.u16("header")
    c.take(36, "header")
    if version not in (4, 5):
        raise errors.EvidenceError(f"TDX quote version {version} is not supported (4 or 5)")
    if tee_type != TEE_TDX:
        raise errors.EvidenceError(f"quote TEE type {tee_type:#x} is not TDX (0x81)")
    if key_type != ATT_KEY_ECDSA_P256:
        raise errors.EvidenceError(f"TDX quote attestation key type {key_type} is not "
                                   "ECDSA-256 (2)")
    if version == 4:
        size = TD_REPORT_10
    else:
        body_type, size = c.u16("body header"), c.u32("body header")
        if (body_type, size) not in ((2, TD_REPORT_10), (3, TD_REPORT_15)):
            raise errors.EvidenceError(f"TDX quote v5 body type {body_type} of {size} bytes "
                                       "is not a TD report")
    td = _td_report(c.take(size, "TD report")[:TD_REPORT_10])
    signed = data[:c.pos]
    sig = _Cursor(c.take(c.u32("signature data length"), "signature data"))
    signature = sig.take(64, "signature")
    attestation_key = sig.take(64, "attestation key")
    if sig.u16("certification data") != CERT_QE_REPORT:
        raise errors.EvidenceError("TDX quote certification data is not a QE report (type 6)")
    qe = _Cursor(sig.take(sig.u32("certification data"), "certification data"))
    qe_raw = qe.take(QE_REPORT_SIZE, "QE report")
    qe_sig = qe.take(64, "QE report signature")
    auth = qe.take(qe.u16("QE authentication data"), "QE authentication data")
    if qe.u16("PCK certification data") != CERT_PCK_CHAIN:
        raise errors.EvidenceError("TDX quote carries no PCK certificate chain (type 5)")
    chain = qe.take(qe.u32("PCK certification data"), "PCK certificate chain")
    return Quote(version, signed, td, signature, attestation_key, _qe_report(qe_raw), qe_sig,
                 auth, chain.rstrip(b"\0"), qe_svn, pce_svn)


@dataclass(frozen=True)
class TdxEvidence:
    quote: Quote
    claims: dict[str, Any] | None


def parse_evidence(evidence: bytes) -> TdxEvidence:
    """The envelope or a raw quote; nothing here is authenticated."""
    if not evidence.lstrip().startswith(b"{"):
        return TdxEvidence(parse_quote(evidence), None)
    obj = _evidence.parse_typed(evidence, TDX, _KEYS)
    try:
        quote = base64.b64decode(obj["quote"], validate=True)
    except (TypeError, binascii.Error):
        raise errors.EvidenceError("tdx evidence quote is not base64") from None
    return TdxEvidence(parse_quote(quote), obj["claims"])


def build_evidence(claims: dict[str, Any], quote: bytes) -> bytes:
    """The canonical ``tdx`` envelope (the LAS quoter writes it)."""
    return _evidence.canonical_json({
        "format": _evidence.FORMAT, "version": _evidence.VERSION, "type": TDX,
        "claims": claims, "quote": base64.b64encode(quote).decode(),
    })
