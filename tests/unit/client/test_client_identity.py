"""The client identity: created once, private (0600 key, 0700 dir), identified like the CAS does."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cloister import errors
from cloister.client import identity_home, load_identity, pins_home


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _openssl_key_hash(cert: Path) -> str:
    out = subprocess.run(
        f"openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
        shell=True, check=True, capture_output=True, text=True,
    ).stdout
    return out.split()[0]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / ".cloister"
    monkeypatch.setenv("CLOISTER_HOME", str(path))
    return path


def test_first_use_creates_private_identity(home: Path) -> None:
    old_umask = os.umask(0)  # a permissive umask must not widen anything
    try:
        ident = load_identity()
    finally:
        os.umask(old_umask)
    assert ident.created
    assert identity_home() == home == ident.home
    assert _mode(home) == 0o700
    assert _mode(ident.key_path) == 0o600
    assert ident.key_path == home / "client-key.pem"
    assert "PRIVATE KEY" in ident.key_path.read_text()
    assert "PRIVATE" not in ident.cert_path.read_text()
    # the identity is what the CAS computes: SHA-256 of the SubjectPublicKeyInfo
    assert ident.key_hash == _openssl_key_hash(ident.cert_path)
    # P-256 and self-signed
    text = subprocess.run(
        ["openssl", "x509", "-in", str(ident.cert_path), "-noout", "-text"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert "prime256v1" in text or "P-256" in text


def test_second_use_reuses_identity(home: Path) -> None:
    first = load_identity()
    again = load_identity()
    assert not again.created
    assert again.key_hash == first.key_hash


def test_concurrent_first_use_creates_one_identity(home: Path) -> None:
    code = "from cloister.client import load_identity; print(load_identity().key_hash)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    hashes = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(hashes) == 1
    assert hashes == {load_identity().key_hash}


def test_open_identity_directory_is_refused(home: Path) -> None:
    load_identity()
    home.chmod(0o755)
    with pytest.raises(errors.ConfigError) as info:
        load_identity()
    assert "unsafe permissions 0755" in info.value.message
    assert info.value.details == [f"run: chmod 700 {home}"]


def test_readable_key_file_is_refused(home: Path) -> None:
    ident = load_identity()
    ident.key_path.chmod(0o644)
    with pytest.raises(errors.ConfigError) as info:
        load_identity()
    assert "unsafe permissions 0644" in info.value.message
    assert "BEGIN" not in " ".join(info.value.lines())


def test_openssl_made_pair_is_accepted(tmp_path: Path, home: Path) -> None:
    cert, key = tmp_path / "alice.pem", tmp_path / "alice-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=alice"],
        check=True, capture_output=True,
    )
    key.chmod(0o600)
    ident = load_identity(cert)
    assert (ident.cert_path, ident.key_path) == (cert, key)
    assert ident.key_hash == _openssl_key_hash(cert)
    assert ident.home == home  # pins of a file identity live in the identity home
    # one file holding certificate and key works too
    both = tmp_path / "both.pem"
    fd = os.open(both, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, cert.read_bytes() + key.read_bytes())
    os.close(fd)
    assert load_identity(both).key_hash == ident.key_hash


def test_identity_directory_option_creates_there(tmp_path: Path, home: Path) -> None:
    other = tmp_path / "other-id"
    ident = load_identity(other)
    assert ident.created and ident.home == other and _mode(other) == 0o700
    assert not home.exists()


def test_mismatched_or_missing_identity_files(tmp_path: Path, home: Path) -> None:
    with pytest.raises(errors.ConfigError, match="does not exist"):
        load_identity(tmp_path / "typo.pem")
    a, b = load_identity(tmp_path / "a"), load_identity(tmp_path / "b")
    mixed = tmp_path / "mixed.pem"
    fd = os.open(mixed, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, a.cert_path.read_bytes() + b.key_path.read_bytes())
    os.close(fd)
    with pytest.raises(errors.ConfigError, match="does not belong"):
        load_identity(mixed)


def test_pins_follow_an_identity_directory(tmp_path: Path, home: Path) -> None:
    assert pins_home(None) == home
    assert pins_home(tmp_path / "new-id") == tmp_path / "new-id"  # before it exists, too
    assert pins_home(tmp_path / "typo.pem") == home
    ident = load_identity(tmp_path / "new-id")
    assert pins_home(ident.cert_path) == home
    assert pins_home(tmp_path / "new-id") == ident.home


def test_half_an_identity_is_never_replaced(home: Path) -> None:
    first = load_identity()
    original_key = first.key_path.read_bytes()
    first.cert_path.unlink()
    with pytest.raises(errors.ConfigError, match="is incomplete"):
        load_identity()
    assert first.key_path.read_bytes() == original_key
