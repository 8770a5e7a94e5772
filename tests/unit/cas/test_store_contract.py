"""The Store contract (:mod:`cloister.cas.store`), run against SQLite and a real PostgreSQL,
each behind the barrier (:class:`~cloister.cas.SealedStore`) as the CAS uses them.

Each backend comes with a ``Backend`` that opens stores on the same storage (two
opens = two replicas) and runs raw SQL the way someone with write access to the
database would — to show that the invariants hold against that too.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloister import errors
from cloister.cas import SealedStore, SessionRecord, SqliteStore, _sqlite
from cloister.cas._keyring import Keyring
from cloister.cas._platforms import enroll, enrolled_platforms
from cloister.cas._sqlite import MIGRATIONS

Store = SealedStore  # what these tests hold: the barrier over each backend


def _sealed(backend: Any, key: bytes) -> SealedStore:
    try:
        return SealedStore(backend, Keyring(key, backend, seal_id="contract"))
    except BaseException:
        backend.close()
        raise

#: the newest schema version (both stores have the same migrations)
LATEST = MIGRATIONS[-1].version

KEY = bytes(range(32))


def rec(name: str, h: str, pred: str | None = None) -> SessionRecord:
    return SessionRecord(name, h, pred, f"name: {name}\n", "c" * 64, "PEM", 1.0)


@dataclass
class Backend:
    name: str
    open: Callable[[bytes], Store]
    #: run one statement as a database owner would (no cloister code involved)
    raw: Callable[[str], list[tuple[Any, ...]]]
    #: every byte the backend keeps on disk
    files: Callable[[], Iterator[Path]]


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "cas.db"

    def raw(sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    return Backend("sqlite", lambda key: _sealed(SqliteStore(path), key), raw,
                   lambda: path.parent.glob("cas.db*"))


def _postgres_backend(cluster: Any) -> Backend:
    import psycopg  # noqa: PLC0415

    from cloister.cas._postgres import PostgresStore  # noqa: PLC0415

    url = cluster.url(cluster.new_database())

    def raw(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as db:
            cur = db.execute(sql)
            return cur.fetchall() if cur.description else []

    def files() -> Iterator[Path]:
        raw("CHECKPOINT")
        return (p for p in cluster.data.rglob("*") if p.is_file())

    return Backend("postgresql", lambda key: _sealed(PostgresStore(url), key), raw, files)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return _postgres_backend(request.getfixturevalue("pg_cluster"))


@pytest.fixture
def opened(backend: Backend) -> Iterator[Callable[[], Store]]:
    """Open stores on the backend (each call: another replica); all closed afterwards."""
    stores: list[Store] = []

    def open_one() -> Store:
        stores.append(backend.open(KEY))
        return stores[-1]

    yield open_one
    for store in stores:
        store.close()


def test_create_update_history_and_secrets(backend: Backend, opened: Callable[[], Store]) -> None:
    store = opened()
    store.create(rec("a", "1" * 64), {"pw": b"hunter2-contract-secret"})
    with pytest.raises(errors.Conflict, match="already exists"):
        store.create(rec("a", "2" * 64), {})
    store.update(rec("a", "2" * 64, "1" * 64), {"pw": b"hunter2-contract-secret"})
    with pytest.raises(errors.Conflict, match="not the current hash"):
        store.update(rec("a", "3" * 64, "1" * 64), {})
    with pytest.raises(errors.Conflict, match="already has a version"):
        store.update(rec("a", "1" * 64, "2" * 64), {})
    with pytest.raises(errors.NotFound):
        store.update(rec("zz", "3" * 64, "1" * 64), {})
    assert [r.hash for r in store.history("a")] == ["1" * 64, "2" * 64]
    assert store.current("a") == rec("a", "2" * 64, "1" * 64)
    assert store.version("a", "1" * 64) == rec("a", "1" * 64)
    assert store.version("a", "9" * 64) is None and store.current("nope") is None
    assert store.secrets("a", "1" * 64) == {"pw": b"hunter2-contract-secret"}
    assert store.secrets("a", "9" * 64) == {}
    store.create(rec("b", "4" * 64), {})
    assert store.names() == ["a", "b"] and store.session_count() == 2
    assert store.check_integrity() == []
    assert not any(b"hunter2-contract-secret" in p.read_bytes() for p in backend.files()), \
        "a secret reached the database files in plaintext"


def test_a_write_by_one_replica_is_read_by_another(opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    one.create(rec("shared", "1" * 64), {"k": b"v"})
    assert two.current("shared") == rec("shared", "1" * 64)
    assert two.secrets("shared", "1" * 64) == {"k": b"v"}


def test_history_and_secrets_are_append_only(backend: Backend,
                                             opened: Callable[[], Store]) -> None:
    store = opened()
    store.create(rec("a", "1" * 64), {"pw": b"x"})
    statements = ["DELETE FROM session_versions", "UPDATE session_versions SET name='evil'",
                  "UPDATE session_versions SET creator_key_hash='evil'",
                  "DELETE FROM secrets", "UPDATE secrets SET secret='other'"]
    if backend.name == "postgresql":
        statements += ["TRUNCATE session_versions CASCADE", "TRUNCATE secrets"]
    for sql in statements:
        with pytest.raises(Exception, match="append-only"):
            backend.raw(sql)
    assert len(opened().history("a")) == 1 and store.secrets("a", "1" * 64) == {"pw": b"x"}


def test_swapped_blob_is_detected(backend: Backend, opened: Callable[[], Store]) -> None:
    store = opened()
    store.create(rec("a", "1" * 64), {"one": b"first", "two": b"second"})
    # an attacker who owns the database copies the blob of 'one' over 'two' (blobs may be
    # replaced: that is how a rewrap works, so no trigger stands in the way)
    backend.raw("UPDATE secrets SET blob=(SELECT blob FROM secrets WHERE secret='one') "
                "WHERE secret='two'")
    problems = store.check_integrity()
    assert len(problems) == 1 and "secret a/" in problems[0], problems
    with pytest.raises(errors.StoreError, match="failed authentication"):
        store.secrets("a", "1" * 64)


def test_wrong_master_key_is_refused_at_open(backend: Backend) -> None:
    backend.open(KEY).close()
    with pytest.raises(errors.ConfigError, match="master key does not open"):
        backend.open(bytes(32))


def test_texts_are_sealed_and_bound_to_their_row(backend: Backend,
                                                 opened: Callable[[], Store]) -> None:
    store = opened()
    store.create(rec("a", "1" * 64), {})
    store.create(rec("b", "2" * 64), {})
    assert not any(b"name: a" in p.read_bytes() for p in backend.files())
    backend.raw("UPDATE session_versions SET sealed_text=(SELECT sealed_text FROM "
                "session_versions WHERE name='a') WHERE name='b'")
    with pytest.raises(errors.StoreError, match="failed authentication"):
        store.current("b")
    assert store.current("a") == rec("a", "1" * 64)


def test_the_head_counts_writes_across_replicas(opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    assert one.head_counter() == 0
    one.create(rec("a", "1" * 64), {})
    two.update(rec("a", "2" * 64, "1" * 64), {})
    results = race(6, lambda i: (one, two)[i % 2].create(rec(f"n{i}", f"{i + 9:064x}"), {}))
    assert results == ["ok"] * 6
    assert one.head_counter() == two.head_counter() == 8


def test_rewrap_under_a_new_term_keeps_everything_readable(opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    one.create(rec("a", "1" * 64), {"pw": b"p"})
    one.put_sealed("identity/x", b"key material")
    term = one.keyring.add_term()
    from cloister.cas._state import rotate_key  # noqa: PLC0415

    result = rotate_key(one, settle_s=0)
    assert result.term == term + 1 and result.rewrapped == 3 and result.remaining == 0
    assert two.secrets("a", "1" * 64) == {"pw": b"p"}  # another replica: reloads the keyring
    assert two.get_sealed("identity/x") == b"key material"
    assert two.check_integrity() == []


def race(n: int, write: Callable[[int], object]) -> list[str]:
    """Run ``write(0..n-1)`` in ``n`` threads released together; "ok"/"conflict"/"quota"
    each."""
    results: list[str] = []
    barrier = threading.Barrier(n)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            write(i)
            results.append("ok")
        except errors.Conflict:
            results.append("conflict")
        except errors.QuotaExceeded:
            results.append("quota")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_updates_to_two_replicas_exactly_one_wins(
        opened: Callable[[], Store]) -> None:
    replicas = [opened(), opened()]
    replicas[0].create(rec("race", "0" * 64), {})
    results = race(16, lambda i: replicas[i % 2].update(
        rec("race", f"{i + 1:064x}", "0" * 64), {"k": b"v"}))
    assert sorted(results) == ["conflict"] * 15 + ["ok"]
    history = replicas[1].history("race")
    assert len(history) == 2
    assert replicas[0].current("race") == history[1]


def test_concurrent_creates_of_one_name_exactly_one_wins(opened: Callable[[], Store]) -> None:
    replicas = [opened(), opened()]
    results = race(8, lambda i: replicas[i % 2].create(
        rec("new", f"{i + 1:064x}"), {"k": bytes([i])}))
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    (only,) = replicas[0].history("new")
    assert replicas[1].current("new") == only
    assert replicas[0].check_integrity() == []


def test_platforms_are_enrolled_once_per_owner_across_replicas_and_only_with_the_key(
        backend: Backend, opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    alice, bob = "a" * 64, "b" * 64
    assert enroll(one, alice, "1" * 64, "node 1") is True
    assert enroll(two, alice, "1" * 64, "again") is False  # already enrolled
    # eight replicas' enrolments race: compare-and-set keeps every one of them
    assert race(8, lambda i: (enroll(
        (one, two)[i % 2], alice, f"{i + 2:064x}", f"n{i}"), None)[1]) == ["ok"] * 8
    assert enrolled_platforms(two, alice) == {
        "1" * 64: "node 1", **{f"{i + 2:064x}": f"n{i}" for i in range(8)}}
    assert enrolled_platforms(one, bob) == {}  # another owner's enrolment never counts
    # a database writer copies alice's sealed map to bob: it does not open there
    backend.raw(f"INSERT INTO meta SELECT 'sealed:platforms:{bob}', value FROM meta "
                f"WHERE key = 'sealed:platforms:{alice}'")
    with pytest.raises(errors.StoreError):
        enrolled_platforms(one, bob)
    assert b"node 1" not in b"".join(p.read_bytes() for p in backend.files())


def test_a_nonce_is_spent_once_across_replicas(backend: Backend,
                                                opened: Callable[[], Store],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite, "NONCE_SWEEP_INTERVAL", 0.0)  # sweep at every spend
    one, two = opened(), opened()
    later = time.time() + 60
    assert one.spend_nonce(b"n" * 32, later) is True
    assert two.spend_nonce(b"n" * 32, later) is False
    assert one.spend_nonce(b"n" * 32, later) is False
    one.spend_nonce(b"old" * 8, time.time() - 1)  # already expired: swept on a later spend
    two.spend_nonce(b"m" * 32, later)
    if backend.name == "sqlite":
        left = {bytes(r[0]) for r in backend.raw("SELECT nonce FROM spent_nonces")}
        assert b"old" * 8 not in left and b"n" * 32 in left


def test_schema_is_versioned_and_a_newer_one_refused(backend: Backend,
                                                     opened: Callable[[], Store]) -> None:
    store = opened()
    assert store.backend.schema_version() == LATEST  # type: ignore[attr-defined]
    rows = backend.raw("SELECT version, summary FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, LATEST + 1)) and all(r[1] for r in rows)
    store.close()
    opened().close()  # reopening applies nothing twice
    assert len(backend.raw("SELECT version FROM schema_version")) == LATEST
    backend.raw("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    with pytest.raises(errors.ConfigError, match="schema version 99, newer than this cloister"):
        backend.open(KEY)


def test_disk_full_is_store_full_nothing_written_and_recovers(
        backend: Backend, request: pytest.FixtureRequest) -> None:
    with contextlib.ExitStack() as stack:
        if backend.name == "sqlite":
            store = stack.enter_context(contextlib.closing(backend.open(KEY)))
            store.create(rec("a", "1" * 64), {})
            conn = store.backend._conn()  # type: ignore[attr-defined]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages}")
            release = lambda: conn.execute("PRAGMA max_page_count=1073741823")  # noqa: E731
        else:
            store, release = stack.enter_context(
                _postgres_on_full_disk(request.getfixturevalue("pg_cluster")))
        with pytest.raises(errors.StoreFull) as info:
            store.create(rec("big", "2" * 64), {f"s{i}": os.urandom(4000) for i in range(50)})
        assert info.value.code == "insufficient_storage" and "full" in info.value.message
        assert store.current("big") is None and store.history("big") == []
        release()
        store.create(rec("big", "2" * 64), {f"s{i}": os.urandom(4000) for i in range(50)})
        assert len(store.secrets("big", "2" * 64)) == 50
        assert store.check_integrity() == []


@contextlib.contextmanager
def _postgres_on_full_disk(cluster: Any) -> Iterator[tuple[Store, Callable[[], None]]]:
    """A database whose tables live on a small tmpfs, filled to the last byte."""
    from cloister.cas._postgres import PostgresStore  # noqa: PLC0415

    space = f"small_{os.getpid()}_{time.monotonic_ns()}"
    mount = cluster.root / space
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("nobody")
            os.chown(mount, entry.pw_uid, entry.pw_gid)
        cluster.psql("postgres", f"CREATE TABLESPACE {space} LOCATION '{mount}'")
        cluster.psql("postgres", f"CREATE DATABASE {space} TABLESPACE {space}")
        store = _sealed(PostgresStore(cluster.url(space)), KEY)
        filler = mount / "filler"
        try:
            store.create(rec("a", "1" * 64), {})
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            chunk = b"\0" * 65536
            while chunk:  # every byte the tmpfs has left
                try:
                    os.write(fd, chunk)
                except OSError:
                    chunk = chunk[: len(chunk) // 2]
            os.close(fd)
            yield store, filler.unlink
        finally:
            store.close()
            filler.unlink(missing_ok=True)
            cluster.psql("postgres", f"DROP DATABASE {space}")
            cluster.psql("postgres", f"DROP TABLESPACE {space}")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_claim_is_exclusive_across_replicas_until_it_expires(
        opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    assert one.claim("singleton/s/app", "h1", until=110, now=100) is True
    assert two.claim("singleton/s/app", "h2", until=115, now=105) is False  # held by h1
    assert two.claim("singleton/s/app", "h1", until=120, now=108) is True  # h1 renews
    assert one.claim("singleton/s/app", "h2", until=130, now=119) is False
    assert one.claim("singleton/s/app", "h2", until=131, now=121) is True  # h1 expired
    two.release("singleton/s/app", "h1")  # not h1's any more: nothing happens
    assert one.claim("singleton/s/app", "h3", until=140, now=122) is False
    two.release("singleton/s/app", "h2")
    assert one.extend("singleton/s/app", "h3", until=150, now=122) is False  # free: not taken
    assert one.claim("singleton/s/app", "h3", until=140, now=122) is True
    assert two.extend("singleton/s/app", "h3", until=150, now=139) is True
    assert two.extend("singleton/s/app", "h3", until=160, now=151) is False  # expired


def test_session_names_are_counted_per_creator(opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    assert one.sessions_created_by("c" * 64) == 0
    one.create(rec("a", "1" * 64), {})
    two.create(rec("b", "2" * 64), {})
    one.update(rec("a", "3" * 64, "1" * 64), {})  # a new version is not a new name
    other = SessionRecord("c", "4" * 64, None, "name: c\n", "d" * 64, "PEM", 1.0)
    one.create(other, {})
    with pytest.raises(errors.Conflict):
        two.create(rec("a", "5" * 64), {})  # refused: not counted
    results = race(8, lambda i: (one, two)[i % 2].create(rec(f"r{i}", f"{i + 6:064x}"), {}))
    assert results == ["ok"] * 8
    assert two.sessions_created_by("c" * 64) == 2 + 8
    assert one.sessions_created_by("d" * 64) == 1


def test_a_store_of_before_the_count_gets_it_from_its_history(
        backend: Backend, opened: Callable[[], Store]) -> None:
    store = opened()
    for i in range(3):
        store.create(rec(f"s{i}", f"{i + 1:064x}"), {})
    store.update(rec("s0", "f" * 64, f"{1:064x}"), {})
    store.close()
    backend.raw("DROP TABLE creator_sessions")  # as schema version 5 left it
    backend.raw("DELETE FROM schema_version WHERE version = 6")
    assert opened().sessions_created_by("c" * 64) == 3


def test_the_per_creator_quota_is_exact_across_replicas(opened: Callable[[], Store]) -> None:
    """Creates of one creator racing on two replicas: exactly the quota's worth get in,
    each told its count, and a refused create leaves nothing behind."""
    one, two = opened(), opened()
    assert one.create(rec("first", "1" * 64), {}, max_sessions=5) == 1
    counts: list[int] = []
    results = race(12, lambda i: counts.append((one, two)[i % 2].create(
        rec(f"q{i}", f"{i + 16:064x}"), {"s": b"v"}, max_sessions=5)))
    assert sorted(results) == ["ok"] * 4 + ["quota"] * 8
    assert sorted(counts) == [2, 3, 4, 5]
    assert one.sessions_created_by("c" * 64) == two.sessions_created_by("c" * 64) == 5
    stored = [i for i in range(12) if two.current(f"q{i}") is not None]
    assert len(stored) == 4 and all(one.secrets(f"q{i}", f"{i + 16:064x}") for i in stored)
    with pytest.raises(errors.QuotaExceeded, match="max_sessions_per_creator"):
        two.create(rec("late", "f" * 64), {}, max_sessions=5)
    other = SessionRecord("o", "e" * 64, None, "name: o\n", "d" * 64, "PEM", 1.0)
    assert two.create(other, {}, max_sessions=5) == 1  # another creator has its own count
    assert one.create(rec("unbounded", "a" * 64), {}) == 6  # no quota given: none applies
