"""AMD SEV-SNP attestation reports (versions 2, 3 and 5), certificate tables, the envelope.

Report layout (SEV-SNP ABI, ``ATTESTATION_REPORT``; little-endian)::

    0x000 version u32      0x004 guest_svn u32    0x008 policy u64
    0x010 family_id 16     0x020 image_id 16      0x030 vmpl u32
    0x034 signature_algo   0x038 current_tcb u64  0x040 platform_info u64
    0x048 flags u32 (bit 0 author key, bit 1 mask chip id, bits 2-4 signing key:
          0 VCEK, 1 VLEK, 7 none)
    0x050 report_data 64   0x090 measurement 48   0x0C0 host_data 32
    0x0E0 id_key_digest 48 0x110 author_key_digest 48
    0x140 report_id 32     0x160 report_id_ma 32  0x180 reported_tcb u64
    0x188 cpuid family, model, stepping (v3+)     0x1A0 chip_id 64
    0x1E0 committed_tcb    0x1F0 launch_tcb       0x2A0 signature

The signature is ECDSA P-384 with SHA-384 over bytes ``0x000..0x29F``; r and
s are stored little-endian in 72-byte fields at 0x2A0 and 0x2E8.  A TCB
value packs one security patch level per byte; which byte is which depends
on the product (Turin adds an FMC level and moves the others).

cloister's envelope (see :mod:`cloister.attest._evidence`)::

    {"format": "cloister-evidence", "version": 1, "type": "sev-snp",
     "claims": {…runtime claims…}, "report": "<base64>", "certificates": "<base64>" | null}

``certificates`` is the extended report's certificate table (GUID, offset,
length entries ending with a zero entry, then the certificates).  A raw
report file (as ``snpguest`` or ``/dev/sev-guest`` write it) is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from cloister import errors
from cloister.attest import _evidence

SEV_SNP = "sev-snp"
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 5)
SIG_ALGO_ECDSA_P384_SHA384 = 1
POLICY_DEBUG = 1 << 19
POLICY_MIGRATE_MA = 1 << 18
POLICY_SMT = 1 << 16
SIGNING_KEYS = {0: "vcek", 1: "vlek", 7: "none"}
#: certificate-table GUIDs (GHCB specification)
GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
_GUID_ROLES = {GUID_VCEK: "vcek", GUID_VLEK: "vlek", GUID_ASK: "ask", GUID_ARK: "ark"}
#: TCB component → byte of the 64-bit TCB value, per product family
TCB_LAYOUTS = {
    "milan": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "genoa": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "turin": {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}
_KEYS = frozenset({"format", "version", "type", "claims", "report", "certificates"})


@dataclass(frozen=True)
class Report:
    """The fields of an SNP attestation report cloister uses (all unauthenticated)."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    reported_tcb: int
    cpuid: tuple[int, int, int] | None
    chip_id: bytes
    committed_tcb: int
    launch_tcb: int
    r: int
    s: int

    @property
    def signed(self) -> bytes:
        return self.raw[:SIGNED_SIZE]

    @property
    def signing_key(self) -> str:
        return SIGNING_KEYS.get((self.flags >> 2) & 7, "unknown")

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)


def parse_report(data: bytes) -> Report:
    """An SNP report (the first 0x4A0 bytes); :class:`errors.EvidenceError` if it is not one."""
    if len(data) < REPORT_SIZE:
        raise errors.EvidenceError(f"SNP report is {len(data)} bytes, shorter than {REPORT_SIZE}")
    raw = data[:REPORT_SIZE]
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0)
    if version not in SUPPORTED_VERSIONS:
        raise errors.EvidenceError(f"SNP report version {version} is not supported "
                                   f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})")
    vmpl, algo, current, platform_info, flags = struct.unpack_from("<IIQQI", raw, 0x30)
    reported, = struct.unpack_from("<Q", raw, 0x180)
    committed, = struct.unpack_from("<Q", raw, 0x1E0)
    launch, = struct.unpack_from("<Q", raw, 0x1F0)
    cpuid = (raw[0x188], raw[0x189], raw[0x18A]) if version >= 3 else None
    return Report(
        raw=raw, version=version, guest_svn=guest_svn, policy=policy,
        family_id=raw[0x10:0x20], image_id=raw[0x20:0x30], vmpl=vmpl, signature_algo=algo,
        current_tcb=current, platform_info=platform_info, flags=flags,
        report_data=raw[0x50:0x90], measurement=raw[0x90:0xC0], host_data=raw[0xC0:0xE0],
        id_key_digest=raw[0xE0:0x110], author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160], reported_tcb=reported, cpuid=cpuid,
        chip_id=raw[0x1A0:0x1E0], committed_tcb=committed, launch_tcb=launch,
        r=int.from_bytes(raw[0x2A0:0x2E8], "little"), s=int.from_bytes(raw[0x2E8:0x330], "little"),
    )


def product_of_cpuid(cpuid: tuple[int, int, int] | None) -> str | None:
    """``milan``/``genoa``/``turin`` from a v3+ report's CPUID family and model, else None."""
    if cpuid is None:
        return None
    family, model, _ = cpuid
    if family == 0x19 and model <= 0x0F:
        return "milan"
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return "genoa"
    if family == 0x1A and model <= 0x11:
        return "turin"
    return None


def tcb_parts(value: int, product: str) -> dict[str, int]:
    """A 64-bit TCB value as its named security patch levels for ``product``."""
    data = value.to_bytes(8, "little")
    return {part: data[index] for part, index in TCB_LAYOUTS[product].items()}


def chip_id_of(report: Report, product: str) -> bytes:
    """The chip id as the VCEK's hwID carries it (Turin: the first 8 bytes)."""
    return report.chip_id[:8] if product == "turin" else report.chip_id


def runtime_binding(measurement: str, fspf_tag: str | None,
                    uid: int | None = None, gid: int | None = None) -> bytes:
    """Bytes 32..63 of REPORT_DATA: SHA-256 over the runtime claims the LAS quoted."""
    return _evidence.runtime_binding(SEV_SNP, measurement, fspf_tag, uid, gid)


def parse_cert_table(table: bytes) -> dict[str, bytes]:
    """Role (``vcek``, ``vlek``, ``ask``, ``ark``) → certificate bytes of a certificate table."""
    found: dict[str, bytes] = {}
    for pos in range(0, len(table) - 23, 24):
        guid, offset, length = table[pos:pos + 16], *struct.unpack_from("<II", table, pos + 16)
        if guid == bytes(16) and offset == 0 and length == 0:
            return found
        if offset + length > len(table):
            raise errors.EvidenceError("SNP certificate table entry points past its end")
        # the GHCB spec writes GUIDs in RFC 4122 byte order; some hosts use EFI's (mixed)
        for candidate in (uuid.UUID(bytes=guid), uuid.UUID(bytes_le=guid)):
            role = _GUID_ROLES.get(candidate)
            if role is not None:
                found.setdefault(role, table[offset:offset + length])
                break
    raise errors.EvidenceError("SNP certificate table has no terminating zero entry")


def build_cert_table(certs: dict[str, bytes]) -> bytes:
    """A certificate table of ``role → DER`` (what a host hands the guest with the report)."""
    guids = {role: guid for guid, role in _GUID_ROLES.items()}
    header = 24 * (len(certs) + 1)
    entries, body = b"", b""
    for role, der in certs.items():
        entries += guids[role].bytes + struct.pack("<II", header + len(body), len(der))
        body += der
    return entries + bytes(24) + body


@dataclass(frozen=True)
class SnpEvidence:
    """``sev-snp`` evidence split up; ``claims`` is None for a raw report file."""

    report: Report
    claims: dict[str, Any] | None
    certificates: dict[str, bytes]


def parse_evidence(evidence: bytes) -> SnpEvidence:
    """The envelope or a raw report; nothing here is authenticated."""
    if not evidence.lstrip().startswith(b"{"):
        return SnpEvidence(parse_report(evidence), None, {})
    obj = _evidence.parse_typed(evidence, SEV_SNP, _KEYS)
    try:
        report = base64.b64decode(obj["report"], validate=True)
        table = obj["certificates"]
        table_bytes = None if table is None else base64.b64decode(table, validate=True)
    except (TypeError, binascii.Error):
        raise errors.EvidenceError("sev-snp evidence report or certificates is not "
                                   "base64") from None
    certs = {} if table_bytes is None else parse_cert_table(table_bytes)
    return SnpEvidence(parse_report(report), obj["claims"], certs)


def build_evidence(claims: dict[str, Any], report: bytes, certificates: bytes | None) -> bytes:
    """The canonical ``sev-snp`` envelope (the LAS quoter writes it)."""
    return _evidence.canonical_json({
        "format": _evidence.FORMAT, "version": _evidence.VERSION, "type": SEV_SNP,
        "claims": claims, "report": base64.b64encode(report).decode(),
        "certificates": None if certificates is None else base64.b64encode(certificates).decode(),
    })
