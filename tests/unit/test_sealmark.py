"""The sealed-mode mark is found in a certificate's extensions, and only there, without
``cryptography`` (``cloister run`` checks it on every CAS connection)."""

from __future__ import annotations

import datetime
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cloister._sealmark import SEALED_MODE_OID, extension_oids, is_sealed_mode, oid_content

_MARK = x509.ObjectIdentifier(SEALED_MODE_OID)


def _certificate(*extensions: x509.ExtensionType, subject_oid: x509.ObjectIdentifier | None = None,
                 ) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, "cas")]
    if subject_oid is not None:
        attributes.append(x509.NameAttribute(subject_oid, "sealed"))
    name = x509.Name(attributes)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_every_extension_oid_is_listed_as_cryptography_encodes_it() -> None:
    extensions = [x509.SubjectAlternativeName([x509.DNSName("cas")]),
                  x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                  x509.BasicConstraints(ca=False, path_length=None),
                  x509.UnrecognizedExtension(_MARK, b"\x05\x00")]
    der = _certificate(*extensions)
    expected = [oid_content(e.oid.dotted_string) for e in extensions]
    assert extension_oids(der) == expected
    assert is_sealed_mode(der)


def test_a_certificate_without_the_extension_is_not_sealed_mode() -> None:
    assert not is_sealed_mode(_certificate(x509.SubjectAlternativeName([x509.DNSName("cas")])))
    assert not is_sealed_mode(_certificate())  # no extensions at all


def test_the_oid_elsewhere_in_the_certificate_is_not_the_mark() -> None:
    """The OID's bytes in the subject name are not the extension (a byte search would say so)."""
    der = _certificate(subject_oid=_MARK)
    assert oid_content(SEALED_MODE_OID) in der
    assert not is_sealed_mode(der)


def test_garbage_and_truncated_certificates_are_not_sealed_mode() -> None:
    der = _certificate(x509.UnrecognizedExtension(_MARK, b"\x05\x00"))
    for broken in (None, b"", b"\x30", b"\x30\x85\xff\xff\xff\xff\xff", der[: len(der) // 2],
                   b"\x02\x01\x00", bytes(64)):
        assert not is_sealed_mode(broken), broken


def test_the_check_loads_no_cryptography() -> None:
    code = ("import sys\nimport cloister.client._transport, cloister._sealmark\n"
            "print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
