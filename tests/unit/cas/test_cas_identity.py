"""The CAS identity: created 0600 on first start, identical on restart, re-issued for new names."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from cloister.cas import load_or_create_identity


def _sans(path: Path) -> set[str]:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def test_created_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path, ["cas.example"])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["cas-ca-key.pem", "cas-ca.pem", "cas-server-key.pem", "cas-server.pem"]
    for name in files:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert {"localhost", "127.0.0.1", "cas", "cas.example"} <= _sans(first.server_cert_path)
    before = {n: (tmp_path / n).read_bytes() for n in files}
    again = load_or_create_identity(tmp_path, ["cas.example"])
    assert again.ca_cert_pem == first.ca_cert_pem
    assert {n: (tmp_path / n).read_bytes() for n in files} == before


def test_new_name_reissues_server_cert_under_same_ca(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    ca_before = first.ca_cert_path.read_bytes()
    second = load_or_create_identity(tmp_path, ["10.0.0.7"])
    assert second.ca_cert_path.read_bytes() == ca_before
    assert "10.0.0.7" in _sans(second.server_cert_path)
    ca = x509.load_pem_x509_certificate(ca_before)
    leaf = x509.load_pem_x509_certificates(second.server_cert_path.read_bytes())[0]
    leaf.verify_directly_issued_by(ca)
