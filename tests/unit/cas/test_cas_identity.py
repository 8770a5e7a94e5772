"""The CAS identity: keys only in the store (sealed), the same on every load, re-issued for
new names under the same CA; the sealed-mode certificate carries its mark."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cloister._sealmark import is_sealed_mode
from cloister.cas import SealedStore, sealed_sqlite
from cloister.cas._identity import (
    SEALED_CERT,
    SEALED_KEY,
    create_identity,
    load_identity,
)


def _sans(path: Path) -> set[str]:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SealedStore]:
    (tmp_path / "db").mkdir()
    s = sealed_sqlite(tmp_path / "db" / "cas.db", bytes(32))
    yield s
    s.close()


def test_created_public_files_only_and_reused(tmp_path: Path, store: SealedStore) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = create_identity(store, state, ["cas.example"])
    files = sorted(p.name for p in state.iterdir())
    assert files == ["cas-ca.pem", "cas-server.pem"]  # no private key on disk
    for name in files:
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert b"PRIVATE" not in b"".join((state / n).read_bytes() for n in files)
    assert {"localhost", "127.0.0.1", "cas", "cas.example"} <= _sans(first.server_cert_path)
    before = {n: (state / n).read_bytes() for n in files}
    again = load_identity(store, state, ["cas.example"])
    assert again.ca_cert_pem == first.ca_cert_pem
    assert again.server_key_pem == first.server_key_pem
    assert {n: (state / n).read_bytes() for n in files} == before
    assert "PRIVATE" not in repr(again)


def test_new_name_reissues_server_cert_under_same_ca(tmp_path: Path, store: SealedStore) -> None:
    first = create_identity(store, tmp_path)
    ca_before = first.ca_cert_path.read_bytes()
    second = load_identity(store, tmp_path, ["10.0.0.7"])
    assert second.ca_cert_path.read_bytes() == ca_before
    assert "10.0.0.7" in _sans(second.server_cert_path)
    ca = x509.load_pem_x509_certificate(ca_before)
    leaf = x509.load_pem_x509_certificates(second.server_cert_path.read_bytes())[0]
    leaf.verify_directly_issued_by(ca)


def test_sealed_mode_certificate_is_marked(tmp_path: Path, store: SealedStore) -> None:
    identity = create_identity(store, tmp_path, sealed_mode=True)
    sealed = x509.load_pem_x509_certificates((tmp_path / SEALED_CERT).read_bytes())[0]
    sealed.verify_directly_issued_by(x509.load_pem_x509_certificate(
        identity.ca_cert_pem.encode()))
    assert is_sealed_mode(sealed.public_bytes(Encoding.DER))
    real = x509.load_pem_x509_certificates(identity.server_cert_path.read_bytes())[0]
    assert not is_sealed_mode(real.public_bytes(Encoding.DER))
    assert stat.S_IMODE((tmp_path / SEALED_KEY).stat().st_mode) == 0o600
