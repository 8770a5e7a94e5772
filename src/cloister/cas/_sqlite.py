"""SQLite implementation of :class:`cloister.cas.store.Store` (opaque sealed blobs only).

WAL mode, ``synchronous=FULL``, ``secure_delete`` (freed pages are zeroed),
one connection per thread.  Every write is a unit of a ``BEGIN IMMEDIATE``
transaction, committed together with the units of other threads that queued
meanwhile (:mod:`cloister.cas._group_commit`: one fsync for the batch, each
caller answered only once it is on disk): the write lock is taken before the
predecessor is read, and units run one after the other, so two updates of the
same name serialize and the second one sees the first one's hash (→
:class:`errors.Conflict`).  Spent nonces alone are committed without waiting
for the fsync (``synchronous=NORMAL``, as the PostgreSQL store's
``synchronous_commit=off``): they survive a crash of the CAS, not of the
machine.  Triggers keep history append-only: rows
are never deleted, and only the sealed blob column may change (rewrap).

Schema versions (:mod:`cloister.cas._schema`, table ``schema_version``),
each migration one transaction, applied in order when the store is opened:

1. the first release: ``meta``, ``session_versions`` (plaintext ``text``),
   ``current_sessions``, ``secrets`` (a store of before versioned schemas
   holds exactly this, hence ``IF NOT EXISTS``);
2. ``spent_nonces`` (and ``service_keys``, unused since version 3);
3. an index of versions by creator; 4. ``claims`` (leases, used OTPs);
5. ``session_versions.text`` becomes ``sealed_text`` (a blob; rows of a
   first-release store keep their plaintext until ``cloister cas
   migrate-state`` rewraps them), and the triggers allow blob rewrapping;
6. ``creator_sessions``: session names per creator, counted from the history
   once and then by every create (the per-creator quota reads one row, not
   the creator's whole history).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar, TypeVar

from cloister import errors
from cloister.cas._group_commit import GroupCommit
from cloister.cas._schema import SCHEMA_TABLE_SQL, Migration, pending
from cloister.cas._store_common import quota_exceeded
from cloister.cas.store import BlobRef, HeadUpdate, Rewrapper, StoredVersion

DB_FILE = "cas.db"
#: seconds between two sweeps of expired attestation nonces (one DELETE per interval,
#: not per spend; the table holds at most the nonces of a lifetime plus this)
NONCE_SWEEP_INTERVAL = 5.0
_T = TypeVar("_T")

_V1 = """
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

_V2 = """
CREATE TABLE service_keys (name TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TRIGGER service_keys_no_update BEFORE UPDATE ON service_keys
BEGIN SELECT RAISE(ABORT, 'service keys are append-only'); END;
CREATE TRIGGER service_keys_no_delete BEFORE DELETE ON service_keys
BEGIN SELECT RAISE(ABORT, 'service keys are append-only'); END;
CREATE TABLE spent_nonces (nonce BLOB PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX spent_nonces_expiry ON spent_nonces (expires_at);
"""

_V5 = """
DROP TRIGGER versions_no_update;
DROP TRIGGER secrets_no_update;
ALTER TABLE session_versions RENAME COLUMN text TO sealed_text;
CREATE TRIGGER versions_no_update
BEFORE UPDATE OF id, name, hash, predecessor, creator_key_hash, creator_cert_pem, created_at
ON session_versions
BEGIN SELECT RAISE(ABORT, 'session history is append-only'); END;
CREATE TRIGGER secrets_no_update BEFORE UPDATE OF session, hash, secret ON secrets
BEGIN SELECT RAISE(ABORT, 'secrets are append-only'); END;
DELETE FROM meta WHERE key = 'schema';
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sessions: versions, current pointers, sealed secrets", _V1),
    Migration(2, "service keys shared by replicas; spent attestation nonces", _V2),
    Migration(3, "sessions by creator (the per-creator quota)",
              "CREATE INDEX versions_by_creator ON session_versions (creator_key_hash);"),
    Migration(4, "claims: singleton leases and used one-time passwords", """
CREATE TABLE claims (key TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL);
CREATE INDEX claims_expiry ON claims (until);
"""),
    Migration(5, "sealed session texts; blobs may be rewrapped (key rotation)", _V5),
    Migration(6, "session names per creator, counted as they are created (the quota)", """
CREATE TABLE creator_sessions (creator_key_hash TEXT PRIMARY KEY, sessions INTEGER NOT NULL);
INSERT INTO creator_sessions
    SELECT creator_key_hash, count(DISTINCT name) FROM session_versions
    GROUP BY creator_key_hash;
"""),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_COLUMNS = "name, hash, predecessor, sealed_text, creator_key_hash, creator_cert_pem, created_at"


def _store_error(exc: sqlite3.Error) -> errors.StoreError:
    text = str(exc)
    if "database or disk is full" in text:
        return errors.StoreFull(
            "the CAS store is full; nothing was written",
            details=["free disk space in the CAS state directory and retry"],
        )
    return errors.StoreError(f"the CAS store failed: {text}")


def _count_creation(db: sqlite3.Connection, creator: str, limit: int | None) -> int:
    """Count one more name of ``creator`` in the write transaction (so the quota is
    exact across processes: the writer lock orders them); the new count."""
    if limit is not None and limit <= 0:
        raise quota_exceeded(limit)
    row = db.execute(
        "INSERT INTO creator_sessions VALUES (?, 1) ON CONFLICT (creator_key_hash) "
        "DO UPDATE SET sessions = creator_sessions.sessions + 1 "
        "WHERE creator_sessions.sessions < ? RETURNING sessions",
        (creator, _NO_LIMIT if limit is None else limit),
    ).fetchone()
    if row is None:
        assert limit is not None
        raise quota_exceeded(limit)
    return int(row[0])


#: the limit that is none (SQLite integers are 64-bit)
_NO_LIMIT = 2**63 - 1


def _blob(value: object) -> bytes:
    """A stored blob; a version-1 text column holds ``str``."""
    if isinstance(value, str):
        return value.encode("utf-8")
    assert isinstance(value, bytes | bytearray | memoryview)
    return bytes(value)


def _version(row: tuple[object, ...]) -> StoredVersion:
    name, h, pred, text, creator, pem, at = row
    return StoredVersion(str(name), str(h), None if pred is None else str(pred), _blob(text),
                         str(creator), str(pem), float(at))  # type: ignore[arg-type]


#: every secret with the creator of its session version (part of the blob's AAD)
_SECRETS_WITH_CREATOR = (
    "SELECT s.rowid, s.session, s.hash, s.secret, s.blob, v.creator_key_hash FROM secrets s "
    "JOIN session_versions v ON v.name = s.session AND v.hash = s.hash"
)


def schema_version_of(db: sqlite3.Connection) -> int:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" in tables:
        return int(db.execute("SELECT coalesce(max(version), 0) FROM schema_version"
                              ).fetchone()[0])
    return 1 if "session_versions" in tables else 0


class SqliteStore:
    """Sessions and sealed blobs in ``<state>/cas.db`` (see :mod:`cloister.cas.store`)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._timeout = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._group = GroupCommit(self._conn, lock_file=f"{path}.lock")
        self._next_sweep = 0.0  # when spend_nonce next deletes expired nonces
        if not path.exists():
            # create it 0600 ourselves; SQLite gives -wal/-shm the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._migrate()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def _migrate(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            current = schema_version_of(db)
            db.execute(SCHEMA_TABLE_SQL)
            for step in pending(current, MIGRATIONS, str(self.path)):
                for statement in _statements(step.script):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                           (step.version, step.summary, time.time()))
        self._write(work)

    def commit_stats(self) -> tuple[int, int]:
        """(commits, writes) since start: writes per commit > 1 is group commit at work."""
        return self._group.batches, self._group.units

    def schema_version(self) -> int:
        return schema_version_of(self._conn())

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
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _write(self, work: Callable[[sqlite3.Connection], _T], *, durable: bool = True) -> _T:
        """``work(db)`` in a write transaction, committed (group commit) before returning;
        SQLite's errors as :class:`errors.StoreError` (:class:`errors.StoreFull`)."""
        try:
            return self._group.run(work, durable=durable)
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    # --- writes ------------------------------------------------------------

    def _insert(
        self, db: sqlite3.Connection, v: StoredVersion, secrets: Mapping[str, bytes],
        head: HeadUpdate,
    ) -> None:
        try:
            db.execute(
                f"INSERT INTO session_versions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608
                (v.name, v.hash, v.predecessor, v.sealed_text, v.creator_key_hash,
                 v.creator_cert_pem, v.created_at),
            )
        except sqlite3.IntegrityError:
            raise errors.Conflict(
                f"session {v.name!r} already has a version with hash {v.hash}"
            ) from None
        db.executemany(
            "INSERT INTO secrets (session, hash, secret, blob) VALUES (?,?,?,?)",
            [(v.name, v.hash, secret, blob) for secret, blob in sorted(secrets.items())],
        )
        row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)",
                   (head(None if row is None else bytes(row[0])),))

    def create(
        self, version: StoredVersion, secrets: Mapping[str, bytes], head: HeadUpdate,
        *, max_sessions: int | None = None,
    ) -> int:
        def work(db: sqlite3.Connection) -> int:
            if db.execute(
                "SELECT 1 FROM current_sessions WHERE name=?", (version.name,)
            ).fetchone():
                raise errors.Conflict(
                    f"session {version.name!r} already exists",
                    details=["to change it, send an update whose predecessor is its hash"],
                )
            count = _count_creation(db, version.creator_key_hash, max_sessions)
            self._insert(db, version, secrets, head)
            db.execute("INSERT INTO current_sessions VALUES (?,?)",
                       (version.name, version.hash))
            return count
        return self._write(work)

    def update(
        self, version: StoredVersion, secrets: Mapping[str, bytes], head: HeadUpdate
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT hash FROM current_sessions WHERE name=?", (version.name,)
            ).fetchone()
            if row is None:
                raise errors.NotFound(
                    f"session {version.name!r} does not exist",
                    details=["create it first (a body without predecessor)"],
                )
            if row[0] != version.predecessor:
                raise errors.Conflict(
                    f"session {version.name!r} changed: predecessor {version.predecessor} "
                    f"is not the current hash {row[0]}",
                    details=["read the session again and base the update on its hash"],
                )
            self._insert(db, version, secrets, head)
            db.execute("UPDATE current_sessions SET hash=? WHERE name=?",
                       (version.hash, version.name))
        self._write(work)

    # --- quotas ----------------------------------------------------------------

    def sessions_created_by(self, creator_key_hash: str) -> int:
        """Number of session names whose creator is ``creator_key_hash``."""
        try:
            row = self._conn().execute(
                "SELECT sessions FROM creator_sessions WHERE creator_key_hash=?",
                (creator_key_hash,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None
        return 0 if row is None else int(row[0])

    # --- reads -------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def current(self, name: str) -> StoredVersion | None:
        cols = ", ".join("v." + c.strip() for c in _COLUMNS.split(","))
        found = self._rows(
            f"SELECT {cols} FROM current_sessions c JOIN session_versions v "  # noqa: S608
            "ON v.name=c.name AND v.hash=c.hash WHERE c.name=?", (name,))
        return _version(found[0]) if found else None

    def version(self, name: str, session_hash: str) -> StoredVersion | None:
        found = self._rows(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=? AND hash=?",  # noqa: S608
            (name, session_hash))
        return _version(found[0]) if found else None

    def names(self) -> list[str]:
        rows = self._rows("SELECT DISTINCT name FROM session_versions ORDER BY name")
        return [str(row[0]) for row in rows]

    def history(self, name: str) -> list[StoredVersion]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=? ORDER BY id",  # noqa: S608
            (name,))
        return [_version(row) for row in rows]

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        rows = self._rows("SELECT secret, blob FROM secrets WHERE session=? AND hash=?",
                          (name, session_hash))
        return {str(secret): _blob(blob) for secret, blob in rows}

    def claim(self, key: str, holder: str, until: float, now: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM claims WHERE until < ?", (now,))
            cursor = db.execute(
                "INSERT INTO claims (key, holder, until) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET until = excluded.until "
                "WHERE claims.holder = excluded.holder",
                (key, holder, until),
            )
            return cursor.rowcount > 0
        return self._write(work)

    def extend(self, key: str, holder: str, until: float, now: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE claims SET until = ? WHERE key = ? AND holder = ? AND until >= ?",
                (until, key, holder, now),
            )
            return cursor.rowcount > 0
        return self._write(work)

    def release(self, key: str, holder: str) -> None:
        self._write(lambda db: db.execute(
            "DELETE FROM claims WHERE key = ? AND holder = ?", (key, holder)))

    def session_count(self) -> int:
        count = self._rows("SELECT count(*) FROM current_sessions")[0][0]
        assert isinstance(count, int)
        return count

    def get_meta(self, key: str) -> bytes | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return _blob(rows[0][0]) if rows else None

    def put_meta(self, key: str, value: bytes | None, *, expected: bytes | None) -> None:
        def work(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            if (None if row is None else _blob(row[0])) != expected:
                raise errors.Conflict(f"store metadata {key!r} changed concurrently")
            if value is None:
                db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self._write(work)

    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        """One insert under a unique key; not waited for on disk (module doc): a crash of
        the machine can forget the spends of its last moments, whose nonces are still
        within their lifetime — and a replayed request cannot open a configuration
        sealed to another's ephemeral key.  Expired entries are swept on the way, at
        most every :data:`NONCE_SWEEP_INTERVAL` seconds (an expired nonce is refused
        before it gets here, so an entry kept a little longer changes no answer)."""
        now = time.time()
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + NONCE_SWEEP_INTERVAL

        def work(db: sqlite3.Connection) -> bool:
            if sweep:
                db.execute("DELETE FROM spent_nonces WHERE expires_at < ?", (now,))
            return bool(db.execute("INSERT OR IGNORE INTO spent_nonces VALUES (?, ?)",
                                   (nonce, expires_at)).rowcount == 1)
        return self._write(work, durable=False)

    # --- maintenance ---------------------------------------------------------

    def _blobs(self, table: str, after: int, limit: int) -> list[tuple[int, BlobRef, bytes]]:
        if table == "text":
            rows = self._rows("SELECT id, name, hash, creator_key_hash, sealed_text FROM "
                              "session_versions WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
            return [(int(r[0]), BlobRef("text", (str(r[1]), str(r[2]), str(r[3]))),  # type: ignore[call-overload]
                     _blob(r[4])) for r in rows]
        if table == "secret":
            rows = self._rows(_SECRETS_WITH_CREATOR + " WHERE s.rowid > ? ORDER BY s.rowid "
                              "LIMIT ?", (after, limit))
            return [(int(r[0]), BlobRef("secret", (str(r[1]), str(r[2]), str(r[3]), str(r[5]))),  # type: ignore[call-overload]
                     _blob(r[4])) for r in rows]
        rows = self._rows("SELECT rowid, key, value FROM meta WHERE key LIKE 'sealed:%' "
                          "AND rowid > ? ORDER BY rowid LIMIT ?", (after, limit))
        return [(int(r[0]), BlobRef("meta", (str(r[1]),)), _blob(r[2])) for r in rows]  # type: ignore[call-overload]

    _UPDATE: ClassVar[dict[str, str]] = {
        "text": "UPDATE session_versions SET sealed_text=? WHERE id=? AND sealed_text=?",
        "secret": "UPDATE secrets SET blob=? WHERE rowid=? AND blob=?",
        "meta": "UPDATE meta SET value=? WHERE rowid=? AND value=?",
    }

    def rewrap(self, fn: Rewrapper, *, batch: int = 200) -> int:
        replaced = 0
        for table in ("text", "secret", "meta"):
            after = 0
            while True:
                rows = self._blobs(table, after, batch)
                if not rows:
                    break
                after = rows[-1][0]
                changes = [(new, rowid, old) for rowid, ref, old in rows
                           if (new := fn(ref, old)) is not None]
                if not changes:
                    continue
                replaced += self._write(functools.partial(
                    _rewrap_rows, sql=self._UPDATE[table], table=table, changes=changes))
        return replaced

    def compact(self) -> None:
        try:
            db = self._conn()
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise _store_error(exc) from None

    def check_integrity(self) -> list[str]:
        problems: list[str] = []
        try:
            db = self._conn()
            result = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                problems.extend(f"integrity_check: {line}" for line in result)
            problems.extend(
                f"foreign key violation in {row[0]} (rowid {row[1]})"
                for row in db.execute("PRAGMA foreign_key_check").fetchall()
            )
        except sqlite3.Error as exc:
            return [*problems, f"store unreadable: {exc}"]
        return problems

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._group.close()
        self._local = threading.local()


def _rewrap_rows(db: sqlite3.Connection, sql: str, table: str,
                 changes: list[tuple[bytes, int, bytes]]) -> int:
    replaced = 0
    for new, rowid, old in changes:
        cur = db.execute(sql, (new, rowid, old))
        if cur.rowcount == 0 and table == "text":  # a version-1 text is stored as TEXT
            cur = db.execute(sql, (new, rowid, old.decode("utf-8", "replace")))
        replaced += cur.rowcount
    return replaced


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner ``;``)."""
    out, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
