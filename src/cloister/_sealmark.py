"""The mark of a CAS's *sealed-mode* server certificate, checked by every CAS client.

A CAS with the ``shamir`` seal starts sealed: its private keys are still
under the seal, so it serves status and unseal requests with a separate
certificate (issued by its CA at init, key kept in the state directory) that
carries this extension.  Whoever holds that key can answer nothing else:
clients treat a server presenting it as "CAS sealed" (retry later), never
as the CAS.  Small and dependency-light: ``cloister run`` imports it.
"""

from __future__ import annotations

from cryptography import x509

#: a UUID-derived OID (2.25.<uuid>), so it collides with no registered arc
SEALED_MODE_OID = x509.ObjectIdentifier("2.25.292563390482562001457314565352160620143")


def is_sealed_mode(der: bytes | None) -> bool:
    """Whether a DER server certificate is a sealed-mode certificate."""
    if not der:
        return False
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.extensions.get_extension_for_oid(SEALED_MODE_OID)
    except (ValueError, x509.ExtensionNotFound):
        return False
    return True
