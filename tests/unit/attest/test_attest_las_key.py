"""LAS platform key handling and listen-address safety (in-process parts)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloister import errors
from cloister.attest import _las, simulation


def test_key_created_0600_in_0700_dir_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "las"
    first = simulation.load_or_create_platform_key(state)
    key_file = state / simulation.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    second = simulation.load_or_create_platform_key(state)
    assert first.private_bytes_raw() == second.private_bytes_raw()
    assert [p.name for p in state.iterdir()] == [simulation.KEY_FILE]  # no temp file left


def test_readable_key_is_refused(tmp_path: Path) -> None:
    simulation.load_or_create_platform_key(tmp_path)
    (tmp_path / simulation.KEY_FILE).chmod(0o644)
    with pytest.raises(errors.ConfigError, match="unsafe permissions 0644") as err:
        simulation.load_or_create_platform_key(tmp_path)
    assert "chmod 600" in err.value.details[0]


def test_non_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / simulation.KEY_FILE
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(errors.ConfigError, match="not a PEM private key"):
        simulation.load_or_create_platform_key(tmp_path)


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "8.8.8.8:0"])
def test_non_loopback_listen_is_refused(tmp_path: Path, listen: str) -> None:
    with pytest.raises(errors.ConfigError, match="non-loopback") as err:
        _las.make_server(tmp_path, listen)
    assert "its Unix socket only" in err.value.details[0]
    assert not (tmp_path / simulation.KEY_FILE).exists()  # refused before creating anything


@pytest.mark.parametrize("listen", ["nohost", ":80", "127.0.0.1:x", "127.0.0.1:70000"])
def test_bad_listen_address(listen: str) -> None:
    with pytest.raises(errors.ConfigError, match="invalid listen address"):
        _las.parse_listen(listen)


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("0.0.0.0", False), ("junk", False),
])
def test_loopback_caller_rule(address: str, loopback: bool) -> None:
    assert _las._is_loopback_ip(address) is loopback
