"""SQLite implementation of :class:`cloister.cas.store.Store`.

WAL mode, ``synchronous=FULL``, one connection per thread.  Every write is a
single ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the
predecessor is read, so two updates of the same name serialize and the
second one sees the first one's hash (→ :class:`errors.Conflict`).
Triggers make ``session_versions``, ``secrets`` and ``service_keys`` append-only.
The schema is migrated on open (:data:`MIGRATIONS`, :mod:`cloister.cas._schema`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cloister import errors
from cloister.cas._keys import Sealer, secret_aad
from cloister.cas._schema import SCHEMA_TABLE_SQL, Migration, pending
from cloister.cas._store_common import (
    check_master_key,
    name_taken,
    no_such_session,
    sealed_problems,
    stale_predecessor,
    version_taken,
)
from cloister.cas.store import KEY_CHECK_AAD, SessionRecord, service_key_aad

DB_FILE = "cas.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS session_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    predecessor TEXT,
    text TEXT NOT NULL,
    creator_key_hash TEXT NOT NULL,
    creator_cert_pem TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (name, hash)
);
CREATE TABLE IF NOT EXISTS current_sessions (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    FOREIGN KEY (name, hash) REFERENCES session_versions (name, hash)
);
CREATE TABLE IF NOT EXISTS secrets (
    session TEXT NOT NULL,
    hash TEXT NOT NULL,
    secret TEXT NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (session, hash, secret),
    FOREIGN KEY (session, hash) REFERENCES session_versions (name, hash)
);
CREATE TRIGGER IF NOT EXISTS versions_no_update BEFORE UPDATE ON session_versions
BEGIN SELECT RAISE(ABORT, 'session history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS versions_no_delete BEFORE DELETE ON session_versions
BEGIN SELECT RAISE(ABORT, 'session history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS secrets_no_update BEFORE UPDATE ON secrets
BEGIN SELECT RAISE(ABORT, 'secrets are append-only'); END;
CREATE TRIGGER IF NOT EXISTS secrets_no_delete BEFORE DELETE ON secrets
BEGIN SELECT RAISE(ABORT, 'secrets are append-only'); END;
"""

#: stores created before versioned schemas hold exactly migration 1 (hence IF NOT EXISTS)
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sessions: versions, current pointers, sealed secrets", _SCHEMA),
    Migration(2, "service keys shared by replicas; spent attestation nonces", """
CREATE TABLE service_keys (name TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TRIGGER service_keys_no_update BEFORE UPDATE ON service_keys
BEGIN SELECT RAISE(ABORT, 'service keys are append-only'); END;
CREATE TRIGGER service_keys_no_delete BEFORE DELETE ON service_keys
BEGIN SELECT RAISE(ABORT, 'service keys are append-only'); END;
CREATE TABLE spent_nonces (nonce BLOB PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX spent_nonces_expiry ON spent_nonces (expires_at);
"""),
    Migration(3, "sessions by creator (the per-creator quota)", """
CREATE INDEX versions_by_creator ON session_versions (creator_key_hash);
"""),
    Migration(4, "claims: singleton leases and used one-time passwords", """
CREATE TABLE claims (key TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL);
CREATE INDEX claims_expiry ON claims (until);
"""),
)


def _statements(script: str) -> Iterator[str]:
    """The complete statements of ``script`` (trigger bodies keep their inner ``;``)."""
    pending_sql = ""
    for line in script.splitlines(keepends=True):
        pending_sql += line
        if sqlite3.complete_statement(pending_sql):
            yield pending_sql.strip()
            pending_sql = ""

_COLUMNS = "name, hash, predecessor, text, creator_key_hash, creator_cert_pem, created_at"


def _store_error(exc: sqlite3.Error) -> errors.StoreError:
    text = str(exc)
    if "database or disk is full" in text:
        return errors.StoreFull(
            "the CAS store is full; nothing was written",
            details=["free disk space in the CAS state directory and retry"],
        )
    return errors.StoreError(f"the CAS store failed: {text}")


#: every secret with the creator of its session version (part of the blob's AAD)
_SECRETS_WITH_CREATOR = (
    "SELECT s.session, s.hash, s.secret, s.blob, v.creator_key_hash FROM secrets s "
    "JOIN session_versions v ON v.name = s.session AND v.hash = s.hash"
)


class SqliteStore:
    """Sessions and sealed secrets in ``<state>/cas.db`` (see :mod:`cloister.cas.store`)."""

    def __init__(self, path: Path, sealer: Sealer, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._sealer = sealer
        self._timeout = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not path.exists():
            # create it 0600 ourselves; SQLite gives -wal/-shm the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            with self._write() as db:
                self._migrate(db)
                self._init_meta(db)
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    # --- connections -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (e.g. on SQLITE_FULL); a second
            # ROLLBACK would fail and hide the real error
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute(SCHEMA_TABLE_SQL)
        row = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        for step in pending(int(row[0]), MIGRATIONS, str(self.path)):
            for statement in _statements(step.script):
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                       (step.version, step.summary, time.time()))

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _init_meta(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key='key_check'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('key_check', ?)",
                       (self._sealer.seal(b"ok", KEY_CHECK_AAD),))
            return
        check_master_key(self._sealer, bytes(row[0]), str(self.path))

    # --- writes ------------------------------------------------------------

    def _insert(
        self, db: sqlite3.Connection, rec: SessionRecord, secrets: Mapping[str, bytes]
    ) -> None:
        try:
            db.execute(
                f"INSERT INTO session_versions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608
                (rec.name, rec.hash, rec.predecessor, rec.text, rec.creator_key_hash,
                 rec.creator_cert_pem, rec.created_at),
            )
        except sqlite3.IntegrityError:
            raise version_taken(rec.name, rec.hash) from None
        db.executemany(
            "INSERT INTO secrets (session, hash, secret, blob) VALUES (?,?,?,?)",
            [
                (rec.name, rec.hash, secret,
                 self._sealer.seal(
                     value, secret_aad(rec.name, rec.hash, secret, rec.creator_key_hash)))
                for secret, value in sorted(secrets.items())
            ],
        )

    def create(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        try:
            with self._write() as db:
                if db.execute(
                    "SELECT 1 FROM current_sessions WHERE name=?", (record.name,)
                ).fetchone():
                    raise name_taken(record.name)
                self._insert(db, record, secrets)
                db.execute("INSERT INTO current_sessions VALUES (?,?)", (record.name, record.hash))
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def update(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        try:
            with self._write() as db:
                row = db.execute(
                    "SELECT hash FROM current_sessions WHERE name=?", (record.name,)
                ).fetchone()
                if row is None:
                    raise no_such_session(record.name)
                if row[0] != record.predecessor:
                    raise stale_predecessor(record.name, record.predecessor, row[0])
                self._insert(db, record, secrets)
                db.execute(
                    "UPDATE current_sessions SET hash=? WHERE name=?", (record.hash, record.name)
                )
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    # --- quotas ----------------------------------------------------------------

    def sessions_created_by(self, creator_key_hash: str) -> int:
        """Number of session names whose creator is ``creator_key_hash``."""
        try:
            row = self._conn().execute(
                "SELECT count(DISTINCT name) FROM session_versions WHERE creator_key_hash=?",
                (creator_key_hash,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return int(row[0])

    # --- reads -------------------------------------------------------------

    def _records(self, sql: str, args: tuple[object, ...]) -> list[SessionRecord]:
        try:
            rows = self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return [SessionRecord(*row) for row in rows]

    def current(self, name: str) -> SessionRecord | None:
        found = self._records(
            f"SELECT {', '.join('v.' + c.strip() for c in _COLUMNS.split(','))} "  # noqa: S608
            "FROM current_sessions c JOIN session_versions v ON v.name=c.name AND v.hash=c.hash "
            "WHERE c.name=?",
            (name,),
        )
        return found[0] if found else None

    def version(self, name: str, session_hash: str) -> SessionRecord | None:
        found = self._records(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=? AND hash=?",  # noqa: S608
            (name, session_hash),
        )
        return found[0] if found else None

    def names(self) -> list[str]:
        try:
            rows = self._conn().execute(
                "SELECT DISTINCT name FROM session_versions ORDER BY name"
            ).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return [str(row[0]) for row in rows]

    def history(self, name: str) -> list[SessionRecord]:
        return self._records(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=? ORDER BY id",  # noqa: S608
            (name,),
        )

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        try:
            rows = self._conn().execute(_SECRETS_WITH_CREATOR + " WHERE s.session=? AND s.hash=?",
                                        (name, session_hash)).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return {
            secret: self._sealer.open(bytes(blob), secret_aad(name, session_hash, secret, creator))
            for _, _, secret, blob, creator in rows
        }

    def claim(self, key: str, holder: str, until: float, now: float) -> bool:
        try:
            with self._write() as db:
                db.execute("DELETE FROM claims WHERE until < ?", (now,))
                cursor = db.execute(
                    "INSERT INTO claims (key, holder, until) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET until = excluded.until "
                    "WHERE claims.holder = excluded.holder",
                    (key, holder, until),
                )
                return cursor.rowcount > 0
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def extend(self, key: str, holder: str, until: float, now: float) -> bool:
        try:
            with self._write() as db:
                cursor = db.execute(
                    "UPDATE claims SET until = ? WHERE key = ? AND holder = ? AND until >= ?",
                    (until, key, holder, now),
                )
                return cursor.rowcount > 0
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def release(self, key: str, holder: str) -> None:
        try:
            with self._write() as db:
                db.execute("DELETE FROM claims WHERE key = ? AND holder = ?", (key, holder))
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def session_count(self) -> int:
        try:
            row = self._conn().execute("SELECT count(*) FROM current_sessions").fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return int(row[0])

    def service_key(self, name: str) -> bytes | None:
        try:
            row = self._conn().execute("SELECT blob FROM service_keys WHERE name=?",
                                       (name,)).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return None if row is None else self._sealer.open(bytes(row[0]), service_key_aad(name))

    def add_service_key(self, name: str, value: bytes) -> bytes:
        try:
            with self._write() as db:
                db.execute("INSERT OR IGNORE INTO service_keys VALUES (?, ?)",
                           (name, self._sealer.seal(value, service_key_aad(name))))
                row = db.execute("SELECT blob FROM service_keys WHERE name=?",
                                 (name,)).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return self._sealer.open(bytes(row[0]), service_key_aad(name))

    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        try:
            with self._write() as db:
                db.execute("DELETE FROM spent_nonces WHERE expires_at < ?", (time.time(),))
                return db.execute("INSERT OR IGNORE INTO spent_nonces VALUES (?, ?)",
                                  (nonce, expires_at)).rowcount == 1
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def check_integrity(self) -> list[str]:
        problems: list[str] = []
        db = self._conn()
        try:
            result = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                problems.extend(f"integrity_check: {line}" for line in result)
            problems.extend(
                f"foreign key violation in {row[0]} (rowid {row[1]})"
                for row in db.execute("PRAGMA foreign_key_check").fetchall()
            )
            rows = db.execute(_SECRETS_WITH_CREATOR).fetchall()
            keys = db.execute("SELECT name, blob FROM service_keys").fetchall()
        except sqlite3.Error as exc:
            return [*problems, f"store unreadable: {exc}"]
        return problems + sealed_problems(self._sealer, rows, keys)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
