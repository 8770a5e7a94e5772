"""The CAS store interface: session history, current pointers, sealed secrets.

Invariants every implementation keeps (SQLite now, PostgreSQL later):

- **History**: session versions are only ever added, never changed or
  deleted; ``hash`` identifies a version of a name.
- **Atomicity**: :meth:`Store.create` and :meth:`Store.update` write the
  version, the current pointer and all its secrets in one transaction — after
  a crash a session is either complete or absent.
- **Compare-and-set**: :meth:`Store.update` succeeds only while the current
  hash still equals ``record.predecessor``; of concurrent updates with the
  same predecessor exactly one wins, the others get :class:`errors.Conflict`.
- **Secrecy**: secret values are passed in and out as plaintext bytes but are
  stored only sealed (AES-256-GCM, master key, AAD = session name, version
  hash and secret name); the plaintext never reaches the database.
- Disk full raises :class:`errors.StoreFull`; any other storage failure
  :class:`errors.StoreError`.  Messages never contain secret bytes.

- Replicas: what several CAS processes on one store must share besides
  sessions lives in the store too: sealed *service keys* (the CAS's own CA, so
  every replica presents one identity; added once, never replaced) and the set
  of *spent attestation nonces* (each accepted at most once, whichever replica
  sees it).
- The schema is versioned (:mod:`cloister.cas._schema`).

Implementations: :mod:`cloister.cas._sqlite` (one process) and
:mod:`cloister.cas._postgres` (several replicas), selected by
``ServerConfig.store_url`` (see :mod:`cloister.cas._stores`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

#: AAD of the sealed marker that proves the master key opens a store
KEY_CHECK_AAD = b"cloister-master-key-check"


def service_key_aad(name: str) -> bytes:
    """AAD binding a sealed service key (e.g. the CAS CA key) to its name."""
    return b"cloister-service-key-v1\0" + name.encode("utf-8")


@dataclass(frozen=True)
class SessionRecord:
    """One stored version of a session."""

    name: str
    hash: str
    predecessor: str | None
    text: str
    creator_key_hash: str
    creator_cert_pem: str
    #: seconds since the epoch (UTC)
    created_at: float


class Store(Protocol):
    """Persistence of sessions and their sealed secrets (see module invariants)."""

    def create(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        """Add a new name.  :class:`errors.Conflict` if the name exists."""

    def update(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        """Add a version if current == ``record.predecessor``, else :class:`errors.Conflict`.

        :class:`errors.NotFound` if the name does not exist.
        """

    def current(self, name: str) -> SessionRecord | None:
        """The current version of ``name``, or ``None``."""

    def version(self, name: str, session_hash: str) -> SessionRecord | None:
        """A version of ``name`` by hash (current or historical), or ``None``."""

    def names(self) -> list[str]:
        """Every session name with at least one version, sorted."""
        ...

    def history(self, name: str) -> list[SessionRecord]:
        """All versions of ``name``, oldest first."""

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        """The opened secrets of one version (empty if it has none)."""

    def claim(self, key: str, holder: str, until: float, now: float) -> bool:
        """Hold ``key`` for ``holder`` until ``until`` (seconds since the epoch), atomically.

        True when the key was free, expired (before ``now``), or already ``holder``'s (a
        renewal); False while another holder has it.  Claims are not secret (names and
        hashes only) and not part of the history."""

    def extend(self, key: str, holder: str, until: float, now: float) -> bool:
        """Move ``holder``'s unexpired claim on ``key`` to ``until``; False (and nothing
        changed) when the key is free, expired or another holder's."""

    def release(self, key: str, holder: str) -> None:
        """Drop ``holder``'s claim on ``key`` (nothing if it is not theirs)."""

    def session_count(self) -> int:
        """Number of session names."""

    def service_key(self, name: str) -> bytes | None:
        """The opened service key ``name``, or ``None`` if no replica has added it."""

    def add_service_key(self, name: str, value: bytes) -> bytes:
        """Add ``name`` unless present; the stored value (another replica's if it won)."""
        ...

    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        """Mark ``nonce`` spent until ``expires_at`` (epoch seconds); True only the first time."""
        ...

    def sessions_created_by(self, creator_key_hash: str) -> int:
        """Number of session names created by ``creator_key_hash`` (the per-creator quota)."""
        ...

    def check_integrity(self) -> list[str]:
        """Problems found (empty = healthy): storage-level checks plus opening every secret."""

    def close(self) -> None:
        """Release connections."""
