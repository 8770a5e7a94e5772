"""SqliteStore specifics (the shared contract is in test_store_contract.py): master key
file, AAD, adopting stores older than versioned schemas."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from cloister import errors
from cloister.cas import SqliteStore
from cloister.cas._keys import KEY_SIZE, Sealer, load_or_create_master_key, secret_aad
from cloister.cas._sqlite import _SCHEMA, MIGRATIONS
from cloister.cas.store import KEY_CHECK_AAD

KEY = bytes(range(32))


def test_a_store_from_before_versioned_schemas_is_adopted(tmp_path: Path) -> None:
    """A cas.db written before schema_version existed holds migration 1 exactly."""
    path = tmp_path / "cas.db"
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA)
    old.execute("INSERT INTO meta VALUES ('schema', '1'), ('key_check', ?)",
                (Sealer(KEY).seal(b"ok", KEY_CHECK_AAD),))
    old.execute("INSERT INTO session_versions (name, hash, predecessor, text, creator_key_hash,"
                " creator_cert_pem, created_at) VALUES ('a', 'h', NULL, 't', 'c', 'P', 1.0)")
    old.execute("INSERT INTO current_sessions VALUES ('a', 'h')")
    old.commit()
    old.close()
    store = SqliteStore(path, Sealer(KEY))
    try:
        assert store.schema_version() == MIGRATIONS[-1].version
        assert store.current("a") is not None and store.check_integrity() == []
        assert store.spend_nonce(b"x", 2e9) is True
    finally:
        store.close()


def test_master_key_file_created_0600_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key = load_or_create_master_key(path)
    assert len(key) == KEY_SIZE and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_master_key(path) == key
    path.chmod(0o644)
    with pytest.raises(errors.ConfigError, match="unsafe permissions 0644") as info:
        load_or_create_master_key(path)
    assert info.value.details == [f"run: chmod 600 {path}"]
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 5)
    short.chmod(0o600)
    with pytest.raises(errors.ConfigError, match="5 bytes"):
        load_or_create_master_key(short)
    with pytest.raises(errors.ConfigError, match="does not exist"):
        load_or_create_master_key(tmp_path / "absent.key", create=False)


def test_aad_binds_session_version_and_secret() -> None:
    sealer = Sealer(KEY)
    blob = sealer.seal(b"v", secret_aad("s", "h", "x", "c"))
    assert sealer.open(blob, secret_aad("s", "h", "x", "c")) == b"v"
    for aad in (secret_aad("t", "h", "x", "c"), secret_aad("s", "g", "x", "c"),
                secret_aad("s", "h", "y", "c"), secret_aad("s", "h", "x", "d")):
        with pytest.raises(errors.StoreError):
            sealer.open(blob, aad)
    assert "hidden" in repr(sealer)
