"""Reading DER (X.690) and OBJECT IDENTIFIER content octets, standard library only.

Shared by the sealed-mode check every CAS client runs before it sends anything
(:mod:`cloister._sealmark`, which must not load ``cryptography``) and by the
certificate writer (:mod:`cloister.secrets._der`).
"""

from __future__ import annotations


def oid_content(dotted: str) -> bytes:
    """The DER content octets of the OBJECT IDENTIFIER ``dotted`` (X.690, 8.19)."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    out = bytearray()
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


def element(der: bytes, at: int, end: int) -> tuple[int, int, int]:
    """``(tag, start of content, end of content)`` of the DER element at ``at``;
    :class:`ValueError` when it does not fit before ``end``."""
    if at + 2 > end:
        raise ValueError("truncated")
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or at + count > end:
            raise ValueError("bad length")
        length = int.from_bytes(der[at:at + count], "big")
        at += count
    if at + length > end:
        raise ValueError("truncated")
    return tag, at, at + length


def children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The elements one after the other from ``start`` to ``end`` (a constructed content)."""
    found = []
    while start < end:
        found.append(item := element(der, start, end))
        start = item[2]
    return found
