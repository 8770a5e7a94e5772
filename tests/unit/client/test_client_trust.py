"""CAS addresses, the pinned certificate's sources and precedence, fingerprints, error classes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cloister import errors
from cloister._http_status import HTTP_STATUS, error_class, status_for
from cloister.cli._exit import exit_code_for
from cloister.client import (
    CASAddress,
    find_trust,
    fingerprint,
    pin_path,
    resolve_address,
    save_pin,
)


def _cert(directory: Path, name: str) -> Path:
    cert = directory / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(directory / f"{name}-key.pem"), "-out", str(cert),
         "-days", "2", "-subj", f"/CN={name}"],
        check=True, capture_output=True,
    )
    return cert


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("cas", "cas", 8081),
        ("CAS:9000", "cas", 9000),
        ("127.0.0.1", "127.0.0.1", 8081),
        ("10.0.0.5:18081", "10.0.0.5", 18081),
        ("[::1]:8443", "::1", 8443),
        ("::1", "::1", 8081),
        ("https://cas.example:8081/", "cas.example", 8081),
    ],
)
def test_address_forms(text: str, host: str, port: int) -> None:
    address = CASAddress.parse(text)
    assert (address.host, address.port) == (host, port)
    assert CASAddress.parse(str(address)) == address


@pytest.mark.parametrize("text", ["", "cas:", "cas:0", "cas:70000", "cas:x", "a b", "[::1"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(errors.ConfigError, match="invalid CAS address"):
        CASAddress.parse(text)


def test_address_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CLOISTER_CAS_ADDR", "SCONE_CAS_ADDR"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_address() == CASAddress("cas", 8081)
    monkeypatch.setenv("SCONE_CAS_ADDR", "scone-cas")
    assert resolve_address().host == "scone-cas"
    monkeypatch.setenv("CLOISTER_CAS_ADDR", "mine:1234")
    assert resolve_address() == CASAddress("mine", 1234)
    assert resolve_address("flag") == CASAddress("flag", 8081)


def test_fingerprint_matches_openssl(tmp_path: Path) -> None:
    cert = _cert(tmp_path, "c")
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert fingerprint(cert.read_text()) == out.strip().split("=", 1)[1]


def test_trust_precedence_and_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOISTER_CAS_CERT", raising=False)
    home = tmp_path / "home"
    address = CASAddress("cas", 8081)
    flag, env, pinned = (_cert(tmp_path, n) for n in ("flag", "env", "pinned"))
    assert find_trust(address, home) is None
    path = save_pin(home, address, pinned.read_text())
    assert path == pin_path(home, address) == home / "known-cas" / "cas_8081.pem"
    assert (home.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    trust = find_trust(address, home)
    assert trust is not None and trust.pem == pinned.read_text() and str(path) in trust.source
    assert find_trust(CASAddress("cas", 8082), home) is None  # pins are per address
    monkeypatch.setenv("CLOISTER_CAS_CERT", str(env))
    trust = find_trust(address, home)
    assert trust is not None and trust.pem == env.read_text()
    trust = find_trust(address, home, flag)
    assert trust is not None and trust.pem == flag.read_text() and "--cas-cert" in trust.source


def test_unreadable_or_non_certificate_pin(tmp_path: Path) -> None:
    address = CASAddress("cas")
    with pytest.raises(errors.ConfigError, match="cannot read CAS certificate"):
        find_trust(address, tmp_path, tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(errors.ConfigError, match="is not a PEM certificate"):
        find_trust(address, tmp_path, junk)


def test_remote_errors_are_the_servers_own_classes() -> None:
    err = error_class("not_found", 404)("CAS cas:8081: session 'x' does not exist")
    assert type(err) is errors.NotFound and exit_code_for(err) == 5
    assert error_class("conflict", 409) is errors.Conflict
    assert error_class("forbidden", 403) is errors.AccessDenied
    assert error_class("not_public", 403) is errors.NotPublic
    # a policy the CAS refuses exits like a local policy error, a secret error like a local one
    assert exit_code_for(error_class("invalid_policy", 400)("x")) == 2
    assert exit_code_for(error_class("secret_error", 422)("x")) == \
        exit_code_for(errors.SecretError("x")) == 7
    assert exit_code_for(error_class("store_error", 503)("x")) == 8
    # unknown codes fall back to the status (its generic class), then to a plain Error
    assert error_class("teapot", 409) is errors.Conflict
    assert error_class("teapot", 400) is errors.RequestError
    assert error_class("teapot", 418) is errors.Error
    assert exit_code_for(error_class("internal_error", 500)("x")) == 1


def test_every_class_in_the_status_table_round_trips() -> None:
    """The client's mapping is the server's table read backwards: no class is lost."""
    for cls, status in HTTP_STATUS:
        err = cls("x")
        assert status_for(err) == status
        assert error_class(err.code, status_for(err)) is cls, cls
