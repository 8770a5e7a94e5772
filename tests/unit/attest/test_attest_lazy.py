"""``cloister.attest`` imports a plug-in (and ``cryptography.x509``) only when one of its
names is used: ``cloister run`` needs the LAS client, report data and the ephemeral key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import cloister.attest

PLUGINS = ("cloister.attest.simulation", "cloister.attest.tpm", "cloister.attest.sevsnp",
           "cloister.attest.tdx", "cloister.attest.azsnpvtpm")


def _loaded_after(statement: str) -> list[str]:
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m in {PLUGINS!r} or "
            "m.startswith(('cryptography.x509', 'cloister.attest._plugin', "
            "'cloister.attest._las')))))")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_what_the_runtime_uses_loads_no_plugin_and_no_x509() -> None:
    assert _loaded_after("from cloister.attest import LasClient, generate_ephemeral_key, "
                         "open_sealed, public_key_bytes_of, report_data") == [
        "cloister.attest._las_client"]


def test_a_name_of_a_plugin_loads_that_plugin_only() -> None:
    loaded = _loaded_after("from cloister.attest import SIMULATION")
    assert "cloister.attest.simulation" in loaded
    assert "cloister.attest.tpm" not in loaded
    loaded = _loaded_after("import cloister.attest\ncloister.attest.TpmVerifier")
    assert "cloister.attest.tpm" in loaded
    assert "cloister.attest.simulation" not in loaded


def test_the_verifiers_load_every_plugin() -> None:
    loaded = _loaded_after("import cloister.attest\ncloister.attest.VERIFIERS")
    assert set(PLUGINS) <= set(loaded)


@pytest.mark.parametrize("name", cloister.attest.__all__)
def test_every_public_name_resolves_and_is_listed(name: str) -> None:
    assert getattr(cloister.attest, name) is not None
    assert name in dir(cloister.attest)


def test_an_unknown_name_is_an_attribute_error_and_subpackages_still_import() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        cloister.attest.nonsense  # noqa: B018 - the look-up is the test
    from cloister.attest import tpm  # noqa: PLC0415 - the subpackage, not a lazy name

    assert tpm.TPM == cloister.attest.TPM
