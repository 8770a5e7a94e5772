"""The direct DER path of certificate issuance writes what the certificate builder writes.

Each case issues one certificate twice, through :func:`_x509.issue` (DER written
directly) and :func:`_x509.issue_with_builder` (``cryptography``'s builder, the
reference profile), with the same key, issuer, serial and time: the
TBSCertificates must be equal byte for byte.  OpenSSL verifies the chains the
new path makes, for the purpose each certificate is for.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from secrets_kit import ca, cert, key

from cloister.policy import Secret
from cloister.secrets import _der, _keys, _x509, generate

NOW = datetime(2031, 5, 6, 7, 8, 9, 654321, tzinfo=UTC)
KEY_TYPES = ["P-256", "P-384", "Ed25519", "RSA-2048"]
_KEYS: dict[str, _keys.PrivateKey] = {}


def _key(key_type: str, which: str = "") -> _keys.PrivateKey:
    name = key_type + which
    if name not in _KEYS:
        _KEYS[name] = _keys.generate_key(key_type)
    return _KEYS[name]


@pytest.fixture
def fixed_serial(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    serial = 0x5EC0_0000_0000_0000_0000_0000_0000_0000_0000_0001
    monkeypatch.setattr(x509, "random_serial_number", lambda: serial)
    yield serial


def _issuer(key_type: str, now: datetime = NOW, valid_for: timedelta | None = None,
            name: str = "root") -> _x509.Issuer:
    ca_key = _key(key_type, "ca")
    made = _x509.issue(ca(name, "k", valid_for=valid_for), ca_key, None, now)
    return _x509.Issuer(made.cert, ca_key, (), made.pem)


def _both(secret: Secret, subject: _keys.PrivateKey, issuer: _x509.Issuer | None,
          now: datetime = NOW) -> tuple[x509.Certificate, x509.Certificate]:
    fast = _x509.issue(secret, subject, issuer, now)
    reference = _x509.issue_with_builder(secret, subject, issuer, now)
    return fast.cert, reference


LEAVES = [
    cert("srv", "k", "root", dns=("api", "api.example"), ips=("127.0.0.1", "::1"),
         endpoint="server"),
    cert("cli", "k", "root", endpoint="client"),
    cert("both", "k", "root", dns=("redis",)),
    cert("named", "k", "root", common_name="Patients API — ünïcode", ips=("10.0.0.7",)),
    cert("long_" + "x" * 100, "k", "root", valid_for=timedelta(days=90)),
]


@pytest.mark.parametrize("signer_type", KEY_TYPES)
@pytest.mark.parametrize("subject_type", KEY_TYPES)
@pytest.mark.parametrize("leaf", LEAVES, ids=lambda s: s.name[:8])
def test_leaf_tbs_is_the_builders_byte_for_byte(
    fixed_serial: int, signer_type: str, subject_type: str, leaf: Secret
) -> None:
    issuer = _issuer(signer_type)
    fast, reference = _both(leaf, _key(subject_type), issuer)
    assert fast.tbs_certificate_bytes == reference.tbs_certificate_bytes
    assert fast.serial_number == fixed_serial
    fast.verify_directly_issued_by(issuer.cert)
    assert fast.signature_algorithm_oid == reference.signature_algorithm_oid


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_self_signed_ca_and_leaf_tbs_are_the_builders(fixed_serial: int, key_type: str) -> None:
    for secret in (ca("root", "k"), ca("short", "k", valid_for=timedelta(hours=2)),
                   cert("self", "k", dns=("api",))):
        fast, reference = _both(secret, _key(key_type), None)
        assert fast.tbs_certificate_bytes == reference.tbs_certificate_bytes, secret.name
        fast.verify_directly_issued_by(fast)


def test_intermediate_ca_and_capped_validity_are_the_builders(fixed_serial: int) -> None:
    root = _issuer("P-256", valid_for=timedelta(days=30))
    for secret in (ca("inter", "k", "root"), cert("leaf", "k", "root", dns=("a",))):
        fast, reference = _both(secret, _key("P-384"), root)
        assert fast.tbs_certificate_bytes == reference.tbs_certificate_bytes
        assert fast.not_valid_after_utc == root.cert.not_valid_after_utc  # cut to the issuer


def test_times_from_2050_are_generalized_time_as_the_builder_writes(fixed_serial: int) -> None:
    late = datetime(2045, 1, 1, tzinfo=UTC)  # + 10 years: notAfter in 2055
    root = _issuer("P-256", now=late)
    fast, reference = _both(cert("leaf", "k", "root"), _key("P-256"), root, late)
    assert fast.tbs_certificate_bytes == reference.tbs_certificate_bytes
    assert fast.not_valid_after_utc.year > 2050


def test_issuer_without_subject_key_identifier_is_named_by_its_key(fixed_serial: int) -> None:
    """An imported CA may lack an SKI: the AKI is then computed from its key, as before."""
    ca_key = _key("P-256", "bare")
    bare = (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(x509.Name([])).public_key(ca_key.public_key())
            .serial_number(7).not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, _keys.signature_hash(ca_key)))
    issuer = _x509.Issuer(bare, ca_key, ())
    fast, reference = _both(cert("leaf", "k", "bare"), _key("P-256"), issuer)
    assert fast.tbs_certificate_bytes == reference.tbs_certificate_bytes


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_key_identifier_is_rfc5280_method_1(key_type: str) -> None:
    public = _key(key_type).public_key()
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _der.key_identifier(spki) == x509.SubjectKeyIdentifier.from_public_key(public).digest


def test_pem_is_what_cryptography_writes() -> None:
    made = _x509.issue(cert("srv", "k", dns=("api",)), _key("RSA-2048"), None, NOW)
    assert made.pem == made.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    assert x509.load_pem_x509_certificate(made.pem.encode()).tbs_certificate_bytes == \
        made.cert.tbs_certificate_bytes


def test_a_non_ascii_dns_name_still_fails_as_the_builder_fails() -> None:
    with pytest.raises(ValueError, match="A-label"):
        _x509.issue(cert("srv", "k", dns=("bücher.example",)), _key("P-256"), None, NOW)


# --- OpenSSL accepts the chains ------------------------------------------------------------


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30,
                          check=False)


@pytest.mark.parametrize("key_type", ["P-256", "Ed25519", "RSA-2048"])
def test_openssl_verifies_generated_chains_for_their_purpose(
    tmp_path: Path, key_type: str
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    values = generate([
        key("root_key", key_type), ca("root", "root_key"),
        key("inter_key"), ca("inter", "inter_key", "root"),
        key("k", key_type),
        cert("server", "k", "inter", dns=("api.example",), ips=("127.0.0.1",),
             endpoint="server"),
        cert("client", "k", "inter", endpoint="client"),
        cert("both", "k", "root", dns=("redis",)),
    ])
    for name, value in values.items():
        if value.cert_pem is not None:
            (tmp_path / f"{name}.pem").write_text(value.cert_pem)
    root, inter = str(tmp_path / "root.pem"), str(tmp_path / "inter.pem")
    checks = [
        ("server", ["-untrusted", inter, "-purpose", "sslserver", "-verify_hostname",
                    "api.example", "-verify_ip", "127.0.0.1"]),
        ("client", ["-untrusted", inter, "-purpose", "sslclient"]),
        ("both", ["-purpose", "sslserver", "-verify_hostname", "redis"]),
        ("both", ["-purpose", "sslclient"]),
        ("inter", ["-purpose", "sslserver"]),
    ]
    for name, extra in checks:
        done = _openssl("verify", "-x509_strict", "-CAfile", root, *extra,
                        str(tmp_path / f"{name}.pem"))
        assert done.returncode == 0 and ": OK" in done.stdout, (name, done.stdout, done.stderr)
    # and refuses what the profile forbids: a client-only certificate cannot serve
    done = _openssl("verify", "-CAfile", root, "-untrusted", inter, "-purpose", "sslserver",
                    str(tmp_path / "client.pem"))
    assert done.returncode != 0 and "unsuitable certificate purpose" in done.stdout + done.stderr
