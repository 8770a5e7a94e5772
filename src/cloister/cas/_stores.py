"""Which store a ``--store`` URL names, and which TLS identity goes with it.

- ``sqlite`` (default): ``STATE/cas.db``; ``sqlite:///ABS/PATH``: that file.
  One CAS process; its CA lives in the state directory.
- ``postgresql://…`` (or ``postgres://…``): a database shared by any number of
  replicas (:mod:`cloister.cas._postgres`); the CA lives sealed in the store
  (:mod:`cloister.cas._shared_identity`), so every replica is the same CAS to
  its clients.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cloister import errors
from cloister.cas._identity import CASIdentity, load_or_create_identity
from cloister.cas._keys import Sealer
from cloister.cas._sqlite import DB_FILE, SqliteStore
from cloister.cas.store import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_shared(url: str) -> bool:
    """True when ``url`` names a store several replicas may share."""
    return url.startswith(POSTGRES_SCHEMES)


def open_store_url(url: str, state: Path, sealer: Sealer) -> Store:
    """The store ``url`` names, opened (and migrated) with ``sealer``."""
    if url == "sqlite":
        return SqliteStore(state / DB_FILE, sealer)
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite://")), sealer)
    if is_shared(url):
        from cloister.cas._postgres import PostgresStore  # noqa: PLC0415 — only when used

        return PostgresStore(url, sealer)
    scheme = url.partition(":")[0] or url
    raise errors.ConfigError(
        f"store {scheme!r} is not supported",
        details=["use sqlite (default), sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST/DB"],
    )


def open_identity(store: Store, url: str, state: Path, names: Iterable[str]) -> CASIdentity:
    """The CAS's TLS identity: from the shared store, or the state directory's files."""
    if is_shared(url):
        from cloister.cas._shared_identity import load_shared_identity  # noqa: PLC0415

        return load_shared_identity(store, state, names)
    return load_or_create_identity(state, names)
