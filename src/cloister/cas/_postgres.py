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
- **History**: triggers refuse ``UPDATE``, ``DELETE`` and ``TRUNCATE`` on
  versions, secrets and service keys.
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
from cloister.cas._keys import Sealer, secret_aad
from cloister.cas._pg_pool import ConnectionPool, PoolExhausted
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
)

_COLUMNS = "name, hash, predecessor, text, creator_key_hash, creator_cert_pem, created_at"
_SECRETS_WITH_CREATOR = (
    "SELECT s.session, s.hash, s.secret, s.blob, v.creator_key_hash FROM secrets s "
    "JOIN session_versions v ON v.name = s.session AND v.hash = s.hash"
)


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

    def __init__(self, url: str, sealer: Sealer, settings: PostgresSettings | None = None) -> None:
        self.url = url
        self.where = describe_url(url)
        self._sealer = sealer
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
        db.execute("INSERT INTO meta VALUES ('key_check', %s) ON CONFLICT (key) DO NOTHING",
                   (self._sealer.seal(b"ok", KEY_CHECK_AAD),))
        row = db.execute("SELECT value FROM meta WHERE key='key_check'").fetchone()
        assert row is not None
        check_master_key(self._sealer, bytes(row[0]), str(self.where))
        fsync = db.execute("SHOW fsync").fetchone()
        if fsync is not None and fsync[0] != "on":
            _log.warning("PostgreSQL of %s runs with fsync=%s: acknowledged writes can be lost "
                         "in a crash", self.where, fsync[0])

    # --- writes --------------------------------------------------------------

    def _insert(self, db: psycopg.Connection[Any], rec: SessionRecord,
                secrets: Mapping[str, bytes]) -> None:
        added = db.execute(
            f"INSERT INTO session_versions ({_COLUMNS}) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name, hash) DO NOTHING",
            (rec.name, rec.hash, rec.predecessor, rec.text, rec.creator_key_hash,
             rec.creator_cert_pem, rec.created_at),
        ).rowcount
        if added != 1:
            raise version_taken(rec.name, rec.hash)
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO secrets (session, hash, secret, blob) VALUES (%s, %s, %s, %s)",
                [(rec.name, rec.hash, secret,
                  self._sealer.seal(value, secret_aad(rec.name, rec.hash, secret,
                                                      rec.creator_key_hash)))
                 for secret, value in sorted(secrets.items())],
            )

    def create(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            taken = db.execute(
                "INSERT INTO current_sessions (name, hash) VALUES (%s, %s) "
                "ON CONFLICT (name) DO NOTHING", (record.name, record.hash),
            ).rowcount
            if taken != 1:
                raise name_taken(record.name)
            self._insert(db, record, secrets)
        self._run(work, write=True)

    def update(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        def work(db: psycopg.Connection[Any]) -> None:
            moved = db.execute(
                "UPDATE current_sessions SET hash=%s WHERE name=%s AND hash=%s",
                (record.hash, record.name, record.predecessor),
            ).rowcount
            if moved != 1:
                row = db.execute("SELECT hash FROM current_sessions WHERE name=%s",
                                 (record.name,)).fetchone()
                if row is None:
                    raise no_such_session(record.name)
                raise stale_predecessor(record.name, record.predecessor, row[0])
            self._insert(db, record, secrets)
        self._run(work, write=True)

    # --- reads ---------------------------------------------------------------

    def _records(self, sql: str, args: tuple[object, ...]) -> list[SessionRecord]:
        rows = self._run(lambda db: db.execute(sql, args).fetchall(), write=False)
        return [SessionRecord(*row) for row in rows]

    def current(self, name: str) -> SessionRecord | None:
        found = self._records(
            f"SELECT {', '.join('v.' + c.strip() for c in _COLUMNS.split(','))} "  # noqa: S608
            "FROM current_sessions c JOIN session_versions v ON v.name=c.name AND v.hash=c.hash "
            "WHERE c.name=%s", (name,))
        return found[0] if found else None

    def version(self, name: str, session_hash: str) -> SessionRecord | None:
        found = self._records(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=%s AND hash=%s",  # noqa: S608
            (name, session_hash))
        return found[0] if found else None

    def names(self) -> list[str]:
        rows = self._run(lambda db: db.execute(
            "SELECT DISTINCT name FROM session_versions ORDER BY name").fetchall(), write=False)
        return [str(row[0]) for row in rows]

    def history(self, name: str) -> list[SessionRecord]:
        return self._records(
            f"SELECT {_COLUMNS} FROM session_versions WHERE name=%s ORDER BY id",  # noqa: S608
            (name,))

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        rows = self._run(lambda db: db.execute(
            _SECRETS_WITH_CREATOR + " WHERE s.session=%s AND s.hash=%s",
            (name, session_hash)).fetchall(), write=False)
        return {
            secret: self._sealer.open(bytes(blob), secret_aad(name, session_hash, secret, creator))
            for _, _, secret, blob, creator in rows
        }

    def session_count(self) -> int:
        row = self._run(lambda db: db.execute(
            "SELECT count(*) FROM current_sessions").fetchone(), write=False)
        return int(row[0]) if row else 0

    def sessions_created_by(self, creator_key_hash: str) -> int:
        row = self._run(lambda db: db.execute(
            "SELECT count(DISTINCT name) FROM session_versions WHERE creator_key_hash=%s",
            (creator_key_hash,)).fetchone(), write=False)
        return int(row[0]) if row else 0

    # --- what replicas share besides sessions --------------------------------

    def service_key(self, name: str) -> bytes | None:
        row = self._run(lambda db: db.execute(
            "SELECT blob FROM service_keys WHERE name=%s", (name,)).fetchone(), write=False)
        return None if row is None else self._sealer.open(bytes(row[0]), service_key_aad(name))

    def add_service_key(self, name: str, value: bytes) -> bytes:
        def work(db: psycopg.Connection[Any]) -> bytes:
            db.execute("INSERT INTO service_keys VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                       (name, self._sealer.seal(value, service_key_aad(name))))
            row = db.execute("SELECT blob FROM service_keys WHERE name=%s", (name,)).fetchone()
            assert row is not None
            return bytes(row[0])
        return self._sealer.open(self._run(work, write=True), service_key_aad(name))

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

    def check_integrity(self) -> list[str]:
        try:
            dangling = self._run(lambda db: db.execute(
                "SELECT c.name FROM current_sessions c LEFT JOIN session_versions v "
                "ON v.name=c.name AND v.hash=c.hash WHERE v.name IS NULL").fetchall(), write=False)
            rows = self._run(lambda db: db.execute(_SECRETS_WITH_CREATOR).fetchall(), write=False)
            keys = self._run(lambda db: db.execute(
                "SELECT name, blob FROM service_keys").fetchall(), write=False)
        except errors.StoreError as exc:
            return [f"store unreadable: {exc}"]
        problems = [f"current pointer of {row[0]!r} names no version" for row in dangling]
        return problems + sealed_problems(self._sealer, rows, keys)

    def close(self) -> None:
        self._pool.close()
