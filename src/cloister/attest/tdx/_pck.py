"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): FMSPC, PCE id, TCB.

A minimal DER reader: the extension is a SEQUENCE of ``SEQUENCE {OID, value}``;
the TCB entry nests sixteen component SVNs, the PCE SVN and the CPU SVN.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from cloister import errors

SGX_EXTENSION = "1.2.840.113741.1.13.1"


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """``(tag, value, next position)`` of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise errors.EvidenceError("PCK certificate SGX extension is truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise errors.EvidenceError("PCK certificate SGX extension has a bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise errors.EvidenceError("PCK certificate SGX extension is truncated")
    return tag, data[pos:pos + length], pos + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    items, pos = [], 0
    while pos < len(data):
        tag, value, pos = _tlv(data, pos)
        items.append((tag, value))
    return items


def _oid(value: bytes) -> str:
    if not value:
        return ""
    parts = [value[0] // 40, value[0] % 40]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(map(str, parts))


def _pairs(seq: bytes) -> dict[str, tuple[int, bytes]]:
    """``OID → (tag, value)`` of a SEQUENCE of ``SEQUENCE {OID, value}``."""
    found = {}
    for tag, item in _children(seq):
        inner = _children(item) if tag == 0x30 else []
        if len(inner) == 2 and inner[0][0] == 0x06:
            found[_oid(inner[0][1])] = inner[1]
    return found


@dataclass(frozen=True)
class PckInfo:
    fmspc: bytes
    pce_id: bytes
    tcb_components: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes


def pck_info(cert: x509.Certificate) -> PckInfo:
    """The SGX extension's FMSPC, PCE id and TCB; :class:`errors.EvidenceError` if absent."""
    raw = None
    for ext in cert.extensions:
        if ext.oid.dotted_string == SGX_EXTENSION and isinstance(ext.value,
                                                                 x509.UnrecognizedExtension):
            raw = bytes(ext.value.value)
    if raw is None:
        raise errors.EvidenceError("PCK certificate has no SGX extension")
    top = _children(raw)
    if len(top) != 1 or top[0][0] != 0x30:
        raise errors.EvidenceError("PCK certificate SGX extension is not a SEQUENCE")
    fields = _pairs(top[0][1])
    base = SGX_EXTENSION
    try:
        tcb = _pairs(fields[f"{base}.2"][1])
        components = tuple(int.from_bytes(tcb[f"{base}.2.{i}"][1], "big") for i in range(1, 17))
        return PckInfo(
            fmspc=fields[f"{base}.4"][1], pce_id=fields[f"{base}.3"][1],
            tcb_components=components,
            pce_svn=int.from_bytes(tcb[f"{base}.2.17"][1], "big"),
            cpu_svn=tcb[f"{base}.2.18"][1],
        )
    except KeyError as exc:
        raise errors.EvidenceError(f"PCK certificate SGX extension lacks {exc.args[0]}") from None
