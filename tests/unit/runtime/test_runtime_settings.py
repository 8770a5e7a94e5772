"""``cloister run``'s environment: every mistake is caught before any network I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister import errors
from cloister.runtime._settings import RunSettings

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cert = tmp_path / "cas.pem"
    cert.write_text(PEM)
    return {"CLOISTER_CONFIG_ID": "s/app", "CLOISTER_CAS_CERT": str(cert)}


def test_scone_names_are_accepted_and_cloister_names_win(env: dict[str, str]) -> None:
    settings = RunSettings.from_env(env | {"SCONE_CAS_ADDR": "scone", "SCONE_LAS_ADDR": "l:1"})
    assert (settings.cas_addr, settings.las_addr) == ("scone", "l:1")
    settings = RunSettings.from_env(env | {"SCONE_CAS_ADDR": "scone", "CLOISTER_CAS_ADDR": "c"})
    assert settings.cas_addr == "c"


@pytest.mark.parametrize(("change", "message"), [
    ({"CLOISTER_CONFIG_ID": "no-slash"}, "is not SESSION/SERVICE"),
    ({"CLOISTER_CONFIG_ID": "/svc"}, "is not SESSION/SERVICE"),
    ({"CLOISTER_CAS_CERT": "/nonexistent/cas.pem"}, "cannot read the pinned CAS certificate"),
    ({"CLOISTER_RETRY_SECONDS": "abc"}, "is not a number of seconds"),
    ({"CLOISTER_RETRY_SECONDS": "-5"}, "is not a number of seconds"),
    ({"CLOISTER_RETRY_SECONDS": "nan"}, "is not a number of seconds"),
    ({"CLOISTER_RETRY_SECONDS": "inf"}, "is not a number of seconds"),
])
def test_mistakes_are_config_errors(env: dict[str, str], change: dict[str, str],
                                    message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        RunSettings.from_env(env | change)


def test_missing_config_id_and_pin_are_named(env: dict[str, str]) -> None:
    with pytest.raises(errors.ConfigError, match="CLOISTER_CONFIG_ID"):
        RunSettings.from_env({k: v for k, v in env.items() if k != "CLOISTER_CONFIG_ID"})
    with pytest.raises(errors.ConfigError, match="CLOISTER_CAS_CERT"):
        RunSettings.from_env({k: v for k, v in env.items() if k != "CLOISTER_CAS_CERT"})
