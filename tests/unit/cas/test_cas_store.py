"""SqliteStore: atomic compare-and-set, append-only history, sealed secrets, integrity."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from cloister import errors
from cloister.cas import SessionRecord, SqliteStore
from cloister.cas._keys import KEY_SIZE, Sealer, load_or_create_master_key, secret_aad

KEY = bytes(range(32))


def rec(name: str, h: str, pred: str | None = None) -> SessionRecord:
    return SessionRecord(name, h, pred, f"name: {name}\n", "c" * 64, "PEM", 1.0)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "cas.db", Sealer(KEY))
    yield s  # type: ignore[misc]
    s.close()


def test_create_update_history_and_secrets(store: SqliteStore) -> None:
    store.create(rec("a", "1" * 64), {"pw": b"hunter2-secret"})
    with pytest.raises(errors.Conflict):
        store.create(rec("a", "2" * 64), {})
    store.update(rec("a", "2" * 64, "1" * 64), {"pw": b"hunter2-secret"})
    with pytest.raises(errors.Conflict, match="not the current hash"):
        store.update(rec("a", "3" * 64, "1" * 64), {})
    with pytest.raises(errors.NotFound):
        store.update(rec("zz", "3" * 64, "1" * 64), {})
    assert [r.hash for r in store.history("a")] == ["1" * 64, "2" * 64]
    assert store.current("a") == rec("a", "2" * 64, "1" * 64)
    assert store.version("a", "1" * 64) == rec("a", "1" * 64)
    assert store.secrets("a", "1" * 64) == {"pw": b"hunter2-secret"}
    assert store.session_count() == 1
    assert store.check_integrity() == []
    raw = b"".join(p.read_bytes() for p in store.path.parent.glob("cas.db*"))
    assert b"hunter2-secret" not in raw


def test_history_and_secrets_are_append_only(store: SqliteStore) -> None:
    store.create(rec("a", "1" * 64), {"pw": b"x"})
    db = sqlite3.connect(store.path)
    for sql in ("DELETE FROM session_versions", "UPDATE session_versions SET text='evil'",
                "DELETE FROM secrets", "UPDATE secrets SET blob=x'00'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()


def test_swapped_or_tampered_blob_is_detected(store: SqliteStore) -> None:
    store.create(rec("a", "1" * 64), {"one": b"first", "two": b"second"})
    db = sqlite3.connect(store.path)
    db.execute("DROP TRIGGER secrets_no_update")  # an attacker with write access to the file
    one = db.execute("SELECT blob FROM secrets WHERE secret='one'").fetchone()[0]
    db.execute("UPDATE secrets SET blob=? WHERE secret='two'", (one,))
    db.commit()
    db.close()
    problems = store.check_integrity()
    assert len(problems) == 1 and "'two'" in problems[0]
    with pytest.raises(errors.StoreError, match="failed authentication"):
        store.secrets("a", "1" * 64)


def test_wrong_master_key_is_refused_at_open(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "cas.db", Sealer(KEY)).close()
    with pytest.raises(errors.ConfigError, match="master key does not open"):
        SqliteStore(tmp_path / "cas.db", Sealer(bytes(32)))


def test_concurrent_updates_same_predecessor_one_wins(store: SqliteStore) -> None:
    store.create(rec("race", "0" * 64), {})
    results: list[str] = []
    barrier = threading.Barrier(16)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.update(rec("race", f"{i + 1:064x}", "0" * 64), {"k": b"v"})
            results.append("ok")
        except errors.Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 15 + ["ok"]
    assert len(store.history("race")) == 2


def test_disk_full_is_store_full_and_nothing_written(store: SqliteStore) -> None:
    store.create(rec("a", "1" * 64), {})
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(errors.StoreFull) as info:
        store.create(rec("big", "2" * 64), {f"s{i}": os.urandom(4000) for i in range(50)})
    assert info.value.code == "insufficient_storage"
    assert store.current("big") is None and store.history("big") == []


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
