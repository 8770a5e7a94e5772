"""The mark of a CAS's *sealed-mode* server certificate, checked by every CAS client.

A CAS with the ``shamir`` seal starts sealed: its private keys are still
under the seal, so it serves status and unseal requests with a separate
certificate (issued by its CA at init, key kept in the state directory) that
carries this extension.  Whoever holds that key can answer nothing else:
clients treat a server presenting it as "CAS sealed" (retry later), never
as the CAS.

Standard library only: ``cloister run`` checks the CAS's certificate before
it sends anything, and loading ``cryptography.x509`` for one extension OID
cost its start-up a tenth.  :func:`is_sealed_mode` walks the DER just far
enough to list the certificate's extension OIDs (RFC 5280, 4.1); the TLS
library has already parsed and verified the certificate it was given.
"""

from __future__ import annotations

from cloister._asn1 import children, element, oid_content

__all__ = ["SEALED_MODE_OID", "extension_oids", "is_sealed_mode", "oid_content"]

#: a UUID-derived OID (2.25.<uuid>), so it collides with no registered arc
SEALED_MODE_OID = "2.25.292563390482562001457314565352160620143"

_SEQUENCE, _OID, _EXTENSIONS = 0x30, 0x06, 0xA3  # [3] EXPLICIT Extensions in a TBSCertificate
_MARK = oid_content(SEALED_MODE_OID)


def _inside(item: tuple[int, int, int], tag: int) -> tuple[int, int]:
    """The content span of ``item``, which must carry ``tag``."""
    if item[0] != tag:
        raise ValueError(f"expected tag {tag:#x}, found {item[0]:#x}")
    return item[1], item[2]


def extension_oids(der: bytes) -> list[bytes]:
    """The content octets of every extension's ``extnID`` in a DER certificate.

    :class:`ValueError` when ``der`` does not have a certificate's structure.
    """
    start, end = _inside(element(der, 0, len(der)), _SEQUENCE)  # Certificate
    start, end = _inside(element(der, start, end), _SEQUENCE)  # TBSCertificate
    oids = []
    for field in children(der, start, end):
        if field[0] != _EXTENSIONS:
            continue
        first, last = _inside(element(der, field[1], field[2]), _SEQUENCE)
        for extension in children(der, first, last):  # Extension ::= SEQUENCE { extnID, … }
            inner, stop = _inside(extension, _SEQUENCE)
            oid_start, oid_end = _inside(element(der, inner, stop), _OID)
            oids.append(der[oid_start:oid_end])
    return oids


def is_sealed_mode(der: bytes | None) -> bool:
    """Whether a DER server certificate is a sealed-mode certificate."""
    if not der:
        return False
    try:
        return _MARK in extension_oids(der)
    except ValueError:
        return False
