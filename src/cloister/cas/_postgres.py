"""PostgreSQL implementation of :class:`cloister.cas.store.Store`, shared by CAS replicas.

Select it with ``cloister cas serve --store postgresql://USER@HOST:PORT/DB`` (any
libpq URL; ``sslmode=verify-full&sslrootcert=…`` for TLS to the database).

How each invariant of :mod:`cloister.cas.store` holds with several replicas:

- **Compare-and-set**: the first statement of an update is ``UPDATE
  current_sessions SET hash=new WHERE name=… AND hash=predecessor``.  PostgreSQL
  locks the row; a concurrent update of the same name waits, then re-checks
  the condition against the committed hash and matches nothing (→
  :class:`errors.Conflict`).  A create is ``INSERT … ON CONFLICT DO NOTHING``
  on the pointer.  Same outcome whichever replica each request reached.
- **Atomicity**: pointer, version and secrets are one transaction (the
  pointer's foreign key is checked at commit).  A replica killed mid-write
  drops its connection and PostgreSQL rolls the transaction back.
- **History**: triggers refuse ``DELETE`` and ``TRUNCATE`` on versions and
  secrets, and every ``UPDATE`` but of the sealed blob (a rewrap).
- **Head**: the head row is read ``FOR UPDATE`` in every write transaction
  (an advisory lock covers the first write, before the row exists).
- **Only sealed blobs** arrive here (:mod:`cloister.cas._sealed_store`).
- **Durability**: every connection sets ``synchronous_commit=on``; an answer
  is sent only after ``COMMIT`` returned, i.e. after the WAL reached disk (and
  synchronous standbys, where the operator configured them).
- **Faults**: no space (SQLSTATE 53100) → :class:`errors.StoreFull` (507); a
  database that cannot be reached, or drops the connection, →
  :class:`errors.StoreUnavailable` (503).  The pool reconnects on demand
  (:mod:`cloister.cas._pg_pool`), so replicas recover without a restart.  A
  write that failed before ``COMMIT`` was sent is retried once on a fresh
  connection (it cannot have applied); one that failed during ``COMMIT`` is
  reported as possibly applied.
- **Schema**: versioned migrations (:mod:`cloister.cas._schema`) under an
  advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg import conninfo as pg_conninfo

from cloister import errors
from cloister.cas._pg_pool import ConnectionPool, PoolExhausted
from cloister.cas._schema import SCHEMA_TABLE_SQL, Migration, pending
from cloister.cas._store_common import (
    name_taken,
    no_such_session,
    quota_exceeded,
    stale_predecessor,
    version_taken,
)
from cloister.cas.store import BlobRef, HeadUpdate, Rewrapper, StoredVersion

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: any 64-bit number of our own, so migrations of replicas starting together serialize
_MIGRATION_LOCK = 0x636C6F6973746572  # "cloister"

_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION cloister_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
"""


def _guard(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION cloister_append_only();"
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION cloister_append_only();"
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sessions: versions, current pointers, sealed secrets", _APPEND_ONLY + """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE session_versions (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    predecessor TEXT,
    text TEXT NOT NULL,
    creator_key_hash TEXT NOT NULL,
    creator_cert_pem TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (name, hash)
);
CREATE TABLE current_sessions (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    FOREIGN KEY (name, hash) REFERENCES session_versions (name, hash)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE secrets (
    session TEXT NOT NULL,
    hash TEXT NOT NULL,
    secret TEXT NOT NULL,
    blob BYTEA NOT NULL,
    PRIMARY KEY (session, hash, secret),
    FOREIGN KEY (session, hash) REFERENCES session_versions (name, hash)
);
""" + _guard("session_versions") + _guard("secrets")),
    Migration(2, "service keys shared by replicas; spent attestation nonces", """
CREATE TABLE service_keys (name TEXT PRIMARY KEY, blob BYTEA NOT NULL);
CREATE TABLE spent_nonces (nonce BYTEA PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
CREATE INDEX spent_nonces_expiry ON spent_nonces (expires_at);
""" + _guard("service_keys")),
    Migration(3, "sessions by creator (the per-creator quota)", """
CREATE INDEX versions_by_creator ON session_versions (creator_key_hash);
"""),
    Migration(4, "claims: singleton leases and used one-time passwords", """
CREATE TABLE claims (key TEXT PRIMARY KEY, holder TEXT NOT NULL,
                     until DOUBLE PRECISION NOT NULL);
CREATE INDEX claims_expiry ON claims (until);
"""),
    Migration(5, "sealed session texts; blobs may be rewrapped (key rotation)", """
ALTER TABLE session_versions RENAME COLUMN text TO sealed_text;
ALTER TABLE session_versions ALTER COLUMN sealed_text TYPE BYTEA
    USING convert_to(sealed_text, 'UTF8');
CREATE OR REPLACE FUNCTION cloister_blob_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_TABLE_NAME = 'secrets' THEN
        IF (NEW.session, NEW.hash, NEW.secret) IS DISTINCT FROM
           (OLD.session, OLD.hash, OLD.secret) THEN
            RAISE EXCEPTION 'secrets are append-only'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSIF (NEW.id, NEW.name, NEW.hash, NEW.predecessor, NEW.creator_key_hash,
           NEW.creator_cert_pem, NEW.created_at) IS DISTINCT FROM
          (OLD.id, OLD.name, OLD.hash, OLD.predecessor, OLD.creator_key_hash,
           OLD.creator_cert_pem, OLD.created_at) THEN
        RAISE EXCEPTION 'session history is append-only'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER session_versions_append_only ON session_versions;
CREATE TRIGGER session_versions_append_only BEFORE UPDATE OR DELETE ON session_versions
    FOR EACH ROW EXECUTE FUNCTION cloister_blob_only();
DROP TRIGGER secrets_append_only ON secrets;
CREATE TRIGGER secrets_append_only BEFORE UPDATE OR DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION cloister_blob_only();
DELETE FROM meta WHERE key = 'key_check';
"""),
    Migration(6, "session names per creator, counted as they are created (the quota)", """
CREATE TABLE creator_sessions (creator_key_hash TEXT PRIMARY KEY, sessions BIGINT NOT NULL);
INSERT INTO creator_sessions
    SELECT creator_key_hash, count(DISTINCT name) FROM session_versions
    GROUP BY creator_key_hash;
"""),
)
#: serializes the first write, which creates the head row
_HEAD_LOCK = 0x636C6F6973686564  # "cloished"

_COLUMNS = "name, hash, predecessor, sealed_text, creator_key_hash, creator_cert_pem, created_at"


def _version(row: Any) -> StoredVersion:
    name, h, pred, text, creator, pem, at = row
    return StoredVersion(name, h, pred, bytes(text), creator, pem, float(at))


@dataclass(frozen=True)
class PostgresSettings:
    """Limits of one replica's use of PostgreSQL (documented defaults)."""

    #: connections open at most (one per CAS worker thread is plenty)
    pool_max: int = 16
    #: seconds to open a TCP/TLS connection to the database
    connect_timeout: int = 5
    #: seconds a request waits for a pooled connection before answering 503
    acquire_timeout: float = 5.0
    #: milliseconds one statement may run before PostgreSQL cancels it
    statement_timeout_ms: int = 30_000
    #: seconds between two sweeps of expired attestation nonces
    nonce_sweep_interval: float = 60.0


def describe_url(url: str) -> str:
    """``postgresql://user@host:port/db`` without password or options, for messages."""
    try:
        parts = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or "")


def _lost(exc: psycopg.Error, conn: psycopg.Connection[Any] | None) -> bool:
    """True when ``exc`` means the database is gone (not a refusal of the statement)."""
    state = _sqlstate(exc)
    broken = conn is not None and conn.broken
    if isinstance(exc, psycopg.OperationalError) and (not state or broken):
        return True
    return state.startswith(("08", "57P"))  # connection exception, admin/crash shutdown


class PostgresStore:
    """Sessions and sealed secrets in a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, settings: PostgresSettings | None = None) -> None:
        self.url = url
        self.where = describe_url(url)
        self._settings = settings or PostgresSettings()
        self._next_sweep = 0.0
        s = self._settings
        try:
            pg_conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise errors.ConfigError(
                "the --store PostgreSQL URL cannot be parsed",
                details=["write postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]"],
            ) from None
        self._pool = ConnectionPool(
            url,
            max_size=s.pool_max,
            wait=s.acquire_timeout,
            autocommit=True,
            connect_timeout=s.connect_timeout,
            application_name="cloister-cas",
            options=f"-c synchronous_commit=on -c statement_timeout={s.statement_timeout_ms}"
            " -c default_transaction_isolation=read\\ committed",
        )
        try:
            self._migrate()
            self._run(self._init_meta, write=True)
        except errors.StoreUnavailable:
            self._pool.close()
            raise errors.StoreUnavailable(
                f"cannot reach the CAS store {self.where} to open it",
                details=["check that PostgreSQL runs there and that the URL, user, password "
                         "and sslmode are right (cloister cas serve --store)"],
            ) from None
        except BaseException:
            self._pool.close()
            raise

    # --- connections and error mapping ---------------------------------------

    def _error(self, exc: psycopg.Error, conn: psycopg.Connection[Any] | None,
               *, committing: bool = False) -> errors.StoreError:
        if isinstance(exc, psycopg.errors.DiskFull):
            return errors.StoreFull(
                "the CAS store is full; nothing was written",
                details=[f"free disk space on the PostgreSQL server of {self.where} and retry"],
            )
        if _lost(exc, conn):
            outcome = "it may or may not have been applied: read it back" if committing \
                else "nothing was written"
            return errors.StoreUnavailable(
                f"the CAS store {self.where} is unreachable; {outcome}",
                details=["retry in a moment; the CAS reconnects by itself"],
            )
        # the server's own message names the failing object, never our parameters
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return errors.StoreError(f"the CAS store {self.where} failed: {first}")

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T], *, write: bool) -> _T:
        """Run ``work`` (in one transaction if ``write``), retrying once on a connection
        that turns out dead before anything could have been committed."""
        for attempt in (1, 2):
            committing = False
            conn: psycopg.Connection[Any] | None = None
            try:
                with self._pool.connection() as conn:
                    if not write:
                        return work(conn)
                    with conn.transaction():
                        result = work(conn)
                        committing = True  # leaving the block sends COMMIT
                    return result
            except PoolExhausted:
                raise errors.StoreUnavailable(
                    f"the CAS store {self.where} is unreachable or overloaded: no database "
                    "connection became free; nothing was written",
                    details=["retry in a moment"],
                ) from None
            except psycopg.Error as exc:
                err = self._error(exc, conn, committing=committing)
                if isinstance(err, errors.StoreUnavailable):
                    self._pool.drop_idle()  # they died with this one (a server restart)
                    if attempt == 1 and conn is not None and not committing:
                        continue  # a stale pooled connection: one fresh try
                raise err from None
        raise AssertionError("unreachable")

    # --- schema --------------------------------------------------------------

    def _migrate(self) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute(SCHEMA_TABLE_SQL)
            row = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            for step in pending(int(row[0]) if row else 0, MIGRATIONS, self.where):
                db.execute(step.script.encode("utf-8"))
                db.execute("INSERT INTO schema_version VALUES (%s, %s, %s)",
                           (step.version, step.summary, time.time()))
                _log.info("CAS store %s migrated to schema %d (%s)", self.where, step.version,
                          step.summary)
        self._run(work, write=True)

    def schema_version(self) -> int:
        row = self._run(lambda db: db.execute(
            "SELECT max(version) FROM schema_version").fetchone(), write=False)
        return int(row[0]) if row and row[0] is not None else 0

    def _init_meta(self, db: psycopg.Connection[Any]) -> None:
        fsync = db.execute("SHOW fsync").fetchone()
        if fsync is not None and fsync[0] != "on":
            _log.warning("PostgreSQL of %s runs with fsync=%s: acknowledged writes can be lost "
                         "in a crash", self.where, fsync[0])

    # --- writes --------------------------------------------------------------

    def _insert(self, db: psycopg.Connection[Any], v: StoredVersion,
                secrets: Mapping[str, bytes], head: HeadUpdate) -> None:
        added = db.execute(
            f"INSERT INTO session_versions ({_COLUMNS}) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name, hash) DO NOTHING",
            (v.name, v.hash, v.predecessor, v.sealed_text, v.creator_key_hash,
             v.creator_cert_pem, v.created_at),
        ).rowcount
        if added != 1:
            raise version_taken(v.name, v.hash)
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO secrets (session, hash, secret, blob) VALUES (%s, %s, %s, %s)",
                [(v.name, v.hash, secret, blob) for secret, blob in sorted(secrets.items())],
            )
        row = db.execute("SELECT value FROM meta WHERE key='head' FOR UPDATE").fetchone()
        if row is None:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_HEAD_LOCK,))
            row = db.execute("SELECT value FROM meta WHERE key='head' FOR UPDATE").fetchone()
        db.execute("INSERT INTO meta VALUES ('head', %s) ON CONFLICT (key) DO UPDATE "
                   "SET value = EXCLUDED.value", (head(None if row is None else bytes(row[0])),))

    def create(self, version: StoredVersion, secrets: Mapping[str, bytes],
               head: HeadUpdate, *, max_sessions: int | None = None) -> int:
        def work(db: psycopg.Connection[Any]) -> int:
            taken = db.execute(
                "INSERT INTO current_sessions (name, hash) VALUES (%s, %s) "
                "ON CONFLICT (name) DO NOTHING", (version.name, version.hash),
            ).rowcount
            if taken != 1:
                raise name_taken(version.name)
            if max_sessions is not None and max_sessions <= 0:
                raise quota_exceeded(max_sessions)
            # the creator's row is locked until the commit: concurrent creates by one
            # creator (any process) see each other's counts, so the quota is exact
            row = db.execute(
                "INSERT INTO creator_sessions VALUES (%s, 1) ON CONFLICT (creator_key_hash) "
                "DO UPDATE SET sessions = creator_sessions.sessions + 1 "
                "WHERE creator_sessions.sessions < %s RETURNING sessions",
                (version.creator_key_hash, 2**63 - 1 if max_sessions is None else max_sessions),
            ).fetchone()
            if row is None:
                assert max_sessions is not None
                raise quota_exceeded(max_sessions)
            self._insert(db, version, secrets, head)
            return int(row[0])
        return self._run(work, write=True)

    def update(self, version: StoredVersion, secrets: Mapping[str, bytes],
               head: HeadUpdate) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            moved = db.execute(
                "UPDATE current_sessions SET hash=%s WHERE name=%s AND hash=%s",
                (version.hash, version.name, version.predecessor),
            ).rowcount
            if moved != 1:
                row = db.execute("SELECT hash FROM current_sessions WHERE name=%s",
                                 (version.name,)).fetchone()
                if row is None:
                    raise no_such_session(version.name)
                raise stale_predecessor(version.name, version.predecessor, row[0])
            self._insert(db, version, secrets, head)
        self._run(work, write=True)

    # --- reads ---------------------------------------------------------------

    def _records(self, sql: str, args: tuple[object, ...]) -> list[StoredVersion]:
        rows = self._run(lambda db: db.execute(sql, args).fetchall(), write=False)
        return [_version(row) for row in rows]

    def current(self, name: str) -> StoredVersion | None:
        found = self._records(
            f"SELECT {', '.join('v.' + c.strip() for c in _COLUMNS.split(','))} "  # noqa: S608
            "FROM current_sessions c JOIN session_versions v ON v.name=c.name AND v.hash=c.hash "
            "WHERE c.name=%s", (name,))
        return found[0] if found else None

    def version(self, name: str, session_hash: str) -> StoredVersion | None:
        found = self._records(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=%s AND hash=%s",  # noqa: S608
            (name, session_hash))
        return found[0] if found else None

    def names(self) -> list[str]:
        rows = self._run(lambda db: db.execute(
            "SELECT DISTINCT name FROM session_versions ORDER BY name").fetchall(), write=False)
        return [str(row[0]) for row in rows]

    def history(self, name: str) -> list[StoredVersion]:
        return self._records(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=%s ORDER BY id",  # noqa: S608
            (name,))

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        rows = self._run(lambda db: db.execute(
            "SELECT secret, blob FROM secrets WHERE session=%s AND hash=%s",
            (name, session_hash)).fetchall(), write=False)
        return {str(secret): bytes(blob) for secret, blob in rows}

    def session_count(self) -> int:
        row = self._run(lambda db: db.execute(
            "SELECT count(*) FROM current_sessions").fetchone(), write=False)
        return int(row[0]) if row else 0

    def sessions_created_by(self, creator_key_hash: str) -> int:
        row = self._run(lambda db: db.execute(
            "SELECT sessions FROM creator_sessions WHERE creator_key_hash=%s",
            (creator_key_hash,)).fetchone(), write=False)
        return int(row[0]) if row else 0

    # --- meta, nonces ---------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._run(lambda db: db.execute(
            "SELECT value FROM meta WHERE key=%s", (key,)).fetchone(), write=False)
        return None if row is None else bytes(row[0])

    def put_meta(self, key: str, value: bytes | None, *, expected: bytes | None) -> None:
        def work(db: psycopg.Connection[Any]) -> int:
            if expected is None:
                if value is None:
                    return 1 if db.execute("SELECT 1 FROM meta WHERE key=%s",
                                           (key,)).fetchone() is None else 0
                return int(db.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) "
                                      "DO NOTHING", (key, value)).rowcount)
            if value is None:
                return int(db.execute("DELETE FROM meta WHERE key=%s AND value=%s",
                                      (key, expected)).rowcount)
            return int(db.execute("UPDATE meta SET value=%s WHERE key=%s AND value=%s",
                                  (value, key, expected)).rowcount)
        if self._run(work, write=True) != 1:
            raise errors.Conflict(f"store metadata {key!r} changed concurrently")

    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        """One insert under a unique key, visible to every replica at once.  Not waited
        for on disk (``synchronous_commit=off`` for this transaction only, as the SQLite
        store's ``synchronous=NORMAL``): a database crash can forget the spends of its
        last fraction of a second, whose nonces are still within their minute — and a
        replayed request cannot open a configuration sealed to another's ephemeral key."""
        now = time.time()

        def work(db: psycopg.Connection[Any]) -> bool:
            db.execute("SET LOCAL synchronous_commit TO OFF")
            if now >= self._next_sweep:
                db.execute("DELETE FROM spent_nonces WHERE expires_at < %s", (now,))
            return bool(db.execute(
                "INSERT INTO spent_nonces VALUES (%s, %s) ON CONFLICT (nonce) DO NOTHING",
                (nonce, expires_at)).rowcount == 1)
        spent = self._run(work, write=True)
        if now >= self._next_sweep:
            self._next_sweep = now + self._settings.nonce_sweep_interval
        return spent

    def claim(self, key: str, holder: str, until: float, now: float) -> bool:
        def work(db: psycopg.Connection[Any]) -> bool:
            db.execute("DELETE FROM claims WHERE key = %s AND until < %s", (key, now))
            return bool(db.execute(
                "INSERT INTO claims VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE "
                "SET until = excluded.until WHERE claims.holder = excluded.holder",
                (key, holder, until)).rowcount == 1)
        return self._run(work, write=True)

    def extend(self, key: str, holder: str, until: float, now: float) -> bool:
        def work(db: psycopg.Connection[Any]) -> bool:
            return bool(db.execute(
                "UPDATE claims SET until = %s WHERE key = %s AND holder = %s AND until >= %s",
                (until, key, holder, now)).rowcount == 1)
        return self._run(work, write=True)

    def release(self, key: str, holder: str) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            db.execute("DELETE FROM claims WHERE key = %s AND holder = %s", (key, holder))
        self._run(work, write=True)

    # --- maintenance ---------------------------------------------------------

    _BLOBS: dict[str, tuple[str, str]] = {  # noqa: RUF012 — constant
        "text": ("SELECT id, name, hash, creator_key_hash, sealed_text FROM session_versions "
                 "WHERE id > %s ORDER BY id LIMIT %s",
                 "UPDATE session_versions SET sealed_text=%s WHERE id=%s AND sealed_text=%s"),
        "secret": ("SELECT s.session, s.hash, s.secret, v.creator_key_hash, s.blob FROM secrets s "
                   "JOIN session_versions v ON v.name = s.session AND v.hash = s.hash "
                   "WHERE (s.session, s.hash, s.secret) > (%s, %s, %s) "
                   "ORDER BY s.session, s.hash, s.secret LIMIT %s",
                   "UPDATE secrets SET blob=%s WHERE session=%s AND hash=%s AND secret=%s "
                   "AND blob=%s"),
        "meta": ("SELECT key, value FROM meta WHERE key LIKE 'sealed:%%' AND key > %s "
                 "ORDER BY key LIMIT %s",
                 "UPDATE meta SET value=%s WHERE key=%s AND value=%s"),
    }

    def rewrap(self, fn: Rewrapper, *, batch: int = 200) -> int:
        replaced = 0
        for table, (select, update) in self._BLOBS.items():
            after: tuple[Any, ...] = {"text": (0,), "secret": ("", "", ""), "meta": ("",)}[table]
            while True:
                rows = self._run(lambda db, a=after, q=select: db.execute(  # type: ignore[misc]
                    q, (*a, batch)).fetchall(), write=False)
                if not rows:
                    break
                changes = []
                for row in rows:
                    *key, blob = row
                    if table == "text":
                        ref = BlobRef("text", (key[1], key[2], key[3]))
                        pk: tuple[Any, ...] = (key[0],)
                    elif table == "secret":
                        ref = BlobRef("secret", (key[0], key[1], key[2], key[3]))
                        pk = (key[0], key[1], key[2])
                    else:
                        ref, pk = BlobRef("meta", (key[0],)), (key[0],)
                    new = fn(ref, bytes(blob))
                    if new is not None:
                        changes.append((new, *pk, bytes(blob)))
                    after = pk
                if changes:
                    def work(db: psycopg.Connection[Any], c: list[Any] = changes,
                             q: str = update) -> int:
                        return sum(db.execute(q, args).rowcount for args in c)
                    replaced += self._run(work, write=True)
        return replaced

    def compact(self) -> None:
        """Nothing to do by hand: PostgreSQL's autovacuum reclaims replaced rows (their old
        blobs are ciphertext under keys still in the keyring)."""

    def check_integrity(self) -> list[str]:
        try:
            dangling = self._run(lambda db: db.execute(
                "SELECT c.name FROM current_sessions c LEFT JOIN session_versions v "
                "ON v.name=c.name AND v.hash=c.hash WHERE v.name IS NULL").fetchall(), write=False)
        except errors.StoreError as exc:
            return [f"store unreadable: {exc}"]
        return [f"current pointer of {row[0]!r} names no version" for row in dangling]

    def close(self) -> None:
        self._pool.close()
