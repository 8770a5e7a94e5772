"""SqliteStore behind the barrier: atomic compare-and-set, append-only history, every text
and secret sealed, schema versions, rewrap, the authenticated head."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister import errors
from cloister.cas import SealedStore, SessionRecord, SqliteStore, _sqlite, sealed_sqlite
from cloister.cas._keyring import Keyring
from cloister.cas._keys import KEY_SIZE, read_key_file
from cloister.cas._sealed_store import secret_aad
from cloister.cas._sqlite import MIGRATIONS, SCHEMA_VERSION, schema_version_of

KEY = bytes(range(32))


def test_a_store_from_before_versioned_schemas_is_adopted(tmp_path: Path) -> None:
    """A cas.db written before schema_version existed holds migration 1 exactly."""
    path = tmp_path / "cas.db"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0].script)
    old.execute("INSERT INTO session_versions (name, hash, predecessor, text, creator_key_hash,"
                " creator_cert_pem, created_at) VALUES ('a', 'h', NULL, 't', 'c', 'P', 1.0)")
    old.execute("INSERT INTO current_sessions VALUES ('a', 'h')")
    old.commit()
    old.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version() == MIGRATIONS[-1].version
        assert store.current("a") is not None and store.check_integrity() == []
        assert store.current("a").sealed_text == b"t"  # type: ignore[union-attr]
        assert store.spend_nonce(b"x", 2e9) is True
    finally:
        store.close()


def rec(name: str, h: str, pred: str | None = None) -> SessionRecord:
    return SessionRecord(name, h, pred, f"name: {name}\nvalue: explicit-{name}\n", "c" * 64,
                         "PEM", 1.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SealedStore]:
    s = sealed_sqlite(tmp_path / "cas.db", KEY)
    yield s
    s.close()


def _raw(store: SealedStore) -> bytes:
    backend = store.backend
    assert isinstance(backend, SqliteStore)
    return b"".join(p.read_bytes() for p in backend.path.parent.glob("cas.db*"))


def test_create_update_history_and_secrets(store: SealedStore) -> None:
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
    assert store.head_counter() == 2  # one per committed write, not per failed one
    raw = _raw(store)
    assert b"hunter2-secret" not in raw and b"explicit-a" not in raw


def test_history_is_append_only_and_only_blobs_can_change(store: SealedStore) -> None:
    store.create(rec("a", "1" * 64), {"pw": b"x"})
    backend = store.backend
    assert isinstance(backend, SqliteStore)
    db = sqlite3.connect(backend.path)
    for sql in ("DELETE FROM session_versions", "UPDATE session_versions SET name='evil'",
                "UPDATE session_versions SET creator_key_hash='evil'",
                "DELETE FROM secrets", "UPDATE secrets SET secret='evil'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()


def test_swapped_or_tampered_blob_is_detected(store: SealedStore) -> None:
    store.create(rec("a", "1" * 64), {"one": b"first", "two": b"second"})
    store.create(rec("b", "2" * 64), {})
    backend = store.backend
    assert isinstance(backend, SqliteStore)
    db = sqlite3.connect(backend.path)  # an attacker with write access to the file
    one = db.execute("SELECT blob FROM secrets WHERE secret='one'").fetchone()[0]
    db.execute("UPDATE secrets SET blob=? WHERE secret='two'", (one,))
    text_a = db.execute("SELECT sealed_text FROM session_versions WHERE name='a'").fetchone()[0]
    db.execute("UPDATE session_versions SET sealed_text=? WHERE name='b'", (text_a,))
    db.commit()
    db.close()
    problems = store.check_integrity()
    assert len(problems) == 2, problems
    assert any("secret a/" in p for p in problems) and any("text b/" in p for p in problems)
    with pytest.raises(errors.StoreError, match="failed authentication"):
        store.secrets("a", "1" * 64)
    with pytest.raises(errors.StoreError, match="failed authentication"):
        store.current("b")


def test_wrong_master_key_is_refused_at_open(tmp_path: Path) -> None:
    sealed_sqlite(tmp_path / "cas.db", KEY).close()
    with pytest.raises(errors.ConfigError, match="does not open this CAS store's keyring"):
        sealed_sqlite(tmp_path / "cas.db", bytes(32))


def test_a_forged_head_is_refused(store: SealedStore) -> None:
    store.create(rec("a", "1" * 64), {})
    store.backend.put_meta("head", b'{"counter": 99, "mac": "00"}',
                           expected=store.backend.get_meta("head"))
    with pytest.raises(errors.StoreError, match=r"counter 99.*fails authentication"):
        store.head_counter()
    with pytest.raises(errors.StoreError):
        store.create(rec("b", "2" * 64), {})  # no write on top of a forged head


def test_concurrent_updates_same_predecessor_one_wins(store: SealedStore) -> None:
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
    assert store.head_counter() == 2


def test_disk_full_is_store_full_and_nothing_written(store: SealedStore) -> None:
    store.create(rec("a", "1" * 64), {})
    backend = store.backend
    assert isinstance(backend, SqliteStore)
    conn = backend._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(errors.StoreFull) as info:
        store.create(rec("big", "2" * 64), {f"s{i}": os.urandom(4000) for i in range(50)})
    assert info.value.code == "insufficient_storage"
    assert store.current("big") is None and store.history("big") == []
    assert store.head_counter() == 1


def test_key_file_checked(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"k" * KEY_SIZE)
    path.chmod(0o644)
    with pytest.raises(errors.ConfigError, match="unsafe permissions 0644") as info:
        read_key_file(path)
    assert info.value.details == [f"run: chmod 600 {path}"]
    path.chmod(0o600)
    assert read_key_file(path) == b"k" * KEY_SIZE and stat.S_IMODE(path.stat().st_mode) == 0o600
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 5)
    short.chmod(0o600)
    with pytest.raises(errors.ConfigError, match="5 bytes"):
        read_key_file(short)
    with pytest.raises(errors.ConfigError, match="does not exist"):
        read_key_file(tmp_path / "absent.key")


def test_aad_binds_session_version_and_secret(store: SealedStore) -> None:
    keyring = store.keyring
    blob = keyring.seal(b"v", secret_aad("s", "h", "x", "c"))
    assert keyring.open(blob, secret_aad("s", "h", "x", "c")) == b"v"
    for aad in (secret_aad("t", "h", "x", "c"), secret_aad("s", "g", "x", "c"),
                secret_aad("s", "h", "y", "c"), secret_aad("s", "h", "x", "d")):
        with pytest.raises(errors.StoreError):
            keyring.open(blob, aad)
    assert "hidden" in repr(keyring)


def test_derived_keys_are_stable_and_distinct(tmp_path: Path) -> None:
    one = sealed_sqlite(tmp_path / "a.db", KEY)
    two = sealed_sqlite(tmp_path / "b.db", KEY)
    other = sealed_sqlite(tmp_path / "c.db", bytes(32))
    try:
        nonce = one.keyring.derive_key(b"attest-nonce")
        assert len(nonce) == 32 and nonce == two.keyring.derive_key(b"attest-nonce")
        assert nonce != one.keyring.derive_key(b"audit")
        assert nonce != other.keyring.derive_key(b"attest-nonce")
        assert KEY not in (nonce, one.keyring.derive_key(b"audit"))
    finally:
        for s in (one, two, other):
            s.close()


def test_new_term_rewrap_and_old_blobs_stay_readable(store: SealedStore, tmp_path: Path) -> None:
    store.create(rec("a", "1" * 64), {"pw": b"p"})
    reader = sealed_sqlite(tmp_path / "cas.db", KEY)  # another process, opened before
    term = store.keyring.add_term()
    assert term == 2 and store.keyring.active_term == 2
    store.create(rec("b", "2" * 64), {"pw": b"q"})
    assert reader.secrets("b", "2" * 64) == {"pw": b"q"}  # unknown term: reloads keyring
    terms = []
    store.backend.rewrap(lambda ref, blob: terms.append(Keyring.term_of(blob)))  # type: ignore[func-returns-value]
    assert sorted(set(terms)) == [1, 2]
    assert reader.secrets("a", "1" * 64) == {"pw": b"p"}
    reader.close()


def test_schema_versions(tmp_path: Path) -> None:
    path = tmp_path / "cas.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    assert schema_version_of(db) == SCHEMA_VERSION == MIGRATIONS[-1].version
    db.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    db.commit()
    db.close()
    with pytest.raises(errors.ConfigError, match="schema version 99, newer"):
        SqliteStore(path)


def test_expired_nonces_are_swept_once_per_interval_and_a_spent_one_stays_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sqlite, "NONCE_SWEEP_INTERVAL", 0.3)
    store = SqliteStore(tmp_path / "cas.db")

    def left() -> set[bytes]:
        return {bytes(r[0]) for r in store._conn().execute("SELECT nonce FROM spent_nonces")}

    try:
        assert store.spend_nonce(b"fresh", time.time() + 60) is True  # sweeps (the first)
        assert store.spend_nonce(b"old", time.time() - 1) is True
        assert store.spend_nonce(b"other", time.time() + 60) is True
        assert left() == {b"fresh", b"old", b"other"}, "no sweep within the interval"
        time.sleep(0.35)
        assert store.spend_nonce(b"fresh", time.time() + 60) is False  # still spent
        assert left() == {b"fresh", b"other"}, "the expired nonce is swept after the interval"
    finally:
        store.close()
