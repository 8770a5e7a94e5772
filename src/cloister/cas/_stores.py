"""Which backend a ``--store`` URL names.

- ``sqlite`` (default): ``STATE/cas.db``; ``sqlite:///ABS/PATH``: that file.
  One CAS process.
- ``postgresql://…`` (or ``postgres://…``): a database shared by any number of
  replicas (:mod:`cloister.cas._postgres`).  Everything replicas share —
  sessions, the keyring, the CAS's own (sealed) keys, spent nonces — is in the
  store, so every replica started on a copy of the same state directory
  (``seal.json``) is the same CAS to its clients.

Backends hold only sealed blobs: the barrier above them is
:class:`cloister.cas._sealed_store.SealedStore`.
"""

from __future__ import annotations

from pathlib import Path

from cloister import errors
from cloister.cas._sqlite import DB_FILE, SqliteStore
from cloister.cas.store import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_shared(url: str) -> bool:
    """True when ``url`` names a store several replicas may share."""
    return url.startswith(POSTGRES_SCHEMES)


def open_store_url(url: str, state: Path) -> Store:
    """The backend ``url`` names, opened (and migrated)."""
    if url == "sqlite":
        return SqliteStore(state / DB_FILE)
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite://")))
    if is_shared(url):
        from cloister.cas._postgres import PostgresStore  # noqa: PLC0415 — only when used

        return PostgresStore(url)
    scheme = url.partition(":")[0] or url
    raise errors.ConfigError(
        f"store {scheme!r} is not supported",
        details=["use sqlite (default), sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST/DB"],
    )
