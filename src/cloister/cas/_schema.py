"""Versioned schema migrations shared by the SQLite and PostgreSQL stores.

Each store keeps a ``schema_version`` table with one row per applied
migration (``version``, ``summary``, ``applied_at``).  On open, a store runs
the migrations newer than its highest row, each in the same transaction as its
row, so a crash leaves the schema at a version and never between two.  As
SPIRE's SQL datastore does, a store whose schema is *newer* than this cloister
knows is refused: an old replica must never write into a schema it does not
understand (upgrade every replica, then let the new one migrate).

Migrations are append-only: a released one is never edited, only followed by
another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloister import errors

SCHEMA_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, summary TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    """One step of a store's schema: ``script`` holds statements separated by ``;``."""

    version: int
    summary: str
    script: str


def pending(current: int, migrations: Sequence[Migration], where: str) -> list[Migration]:
    """The migrations to apply to a store at ``current`` (0 = empty), oldest first.

    Refuses a store newer than ``migrations`` knows, naming both versions.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise AssertionError(f"migrations must be numbered 1..n, got {versions}")
    latest = versions[-1] if versions else 0
    if current > latest:
        raise errors.ConfigError(
            f"the CAS store {where} has schema version {current}, newer than this cloister "
            f"knows ({latest})",
            details=["upgrade cloister on this replica to the version that migrated the store"],
        )
    return [m for m in migrations if m.version > current]
