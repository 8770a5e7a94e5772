"""The CAS store interface: what a backend (SQLite now, PostgreSQL later) keeps.

A backend stores **only opaque blobs** for everything secret: session texts
and secret values arrive already sealed by the barrier
(:mod:`cloister.cas._sealed_store`, keys in :mod:`cloister.cas._keyring`),
so no backend ever sees a plaintext or a key.  The CAS works with
:class:`SessionRecord` (plaintext text) through
:class:`~cloister.cas._sealed_store.SealedStore`, which wraps any
:class:`Store`.

Invariants every backend keeps:

- **History**: session versions are only ever added, never deleted; the
  only change a stored version may see is :meth:`Store.rewrap` replacing a
  sealed blob by another sealing of the same plaintext (key rotation).
- **Atomicity**: :meth:`Store.create` and :meth:`Store.update` write the
  version, the current pointer, all its secrets and the new head (the result
  of ``head(old_head)``) in one transaction — after a crash a session is
  either complete (head advanced) or absent (head unchanged).
- **Compare-and-set**: :meth:`Store.update` succeeds only while the current
  hash still equals ``version.predecessor``; of concurrent updates with the
  same predecessor exactly one wins, the others get :class:`errors.Conflict`.
  :meth:`Store.put_meta` likewise succeeds only while the value is ``expected``.
- **Meta**: a small key → bytes map for the barrier (``keyring``: the data
  keys wrapped under the master key; ``head``: the authenticated write
  counter; ``sealed:…``: blobs sealed under the data key, e.g. the CAS's own
  private keys — :meth:`Store.rewrap` covers those too).
- **Versioned schema**: a backend records its schema version and migrates
  older layouts forward when opened (:mod:`cloister.cas._schema`).
- **Replicas**: several CAS processes on one store (PostgreSQL) share
  everything through it — sessions, the keyring, the CAS's own keys (meta
  ``sealed:identity/…``), and the set of spent attestation nonces.
- Disk full raises :class:`errors.StoreFull`; any other storage failure
  :class:`errors.StoreError`.  Messages never contain stored bytes.

A PostgreSQL backend implements the compare-and-set as ``UPDATE
current_sessions SET hash=%(new)s WHERE name=%(name)s AND hash=%(predecessor)s``
inside the version-inserting transaction (``rowcount == 0`` →
:class:`errors.Conflict`), the head as ``SELECT … FOR UPDATE`` of the meta row
followed by its update, and :meth:`Store.rewrap` as batches of ``SELECT … FOR
UPDATE`` + ``UPDATE`` by primary key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class SessionRecord:
    """One version of a session as the CAS uses it (plaintext text)."""

    name: str
    hash: str
    predecessor: str | None
    text: str
    creator_key_hash: str
    creator_cert_pem: str
    #: seconds since the epoch (UTC)
    created_at: float


@dataclass(frozen=True)
class StoredVersion:
    """One version of a session as a backend stores it: the text is a sealed blob."""

    name: str
    hash: str
    predecessor: str | None
    sealed_text: bytes
    creator_key_hash: str
    creator_cert_pem: str
    created_at: float


@dataclass(frozen=True)
class BlobRef:
    """Where a sealed blob lives, with the row fields its AAD binds.

    ``text``: ``(name, hash, creator_key_hash)``; ``secret``: ``(session, hash,
    secret, creator_key_hash)``; ``meta``: ``(key,)``.
    """

    kind: Literal["text", "secret", "meta"]
    parts: tuple[str, ...]


#: computes the new head blob from the current one (``None`` before the first write)
HeadUpdate = Callable[[bytes | None], bytes]
#: returns a replacement for a sealed blob, or ``None`` to leave it as it is
Rewrapper = Callable[[BlobRef, bytes], bytes | None]


class Store(Protocol):
    """Persistence of session versions, sealed secrets and barrier metadata."""

    def create(
        self, version: StoredVersion, secrets: Mapping[str, bytes], head: HeadUpdate,
        *, max_sessions: int | None = None,
    ) -> int:
        """Add a new name; the number of names its creator has created, this one included.

        :class:`errors.Conflict` if the name exists; :class:`errors.QuotaExceeded` if
        the creator has created ``max_sessions`` names already (checked in the write's
        own transaction: exact however many processes write).
        """

    def update(
        self, version: StoredVersion, secrets: Mapping[str, bytes], head: HeadUpdate
    ) -> None:
        """Add a version if current == ``version.predecessor``, else :class:`errors.Conflict`.

        :class:`errors.NotFound` if the name does not exist.
        """

    def current(self, name: str) -> StoredVersion | None:
        """The current version of ``name``, or ``None``."""

    def version(self, name: str, session_hash: str) -> StoredVersion | None:
        """A version of ``name`` by hash (current or historical), or ``None``."""

    def names(self) -> list[str]:
        """Every session name with at least one version, sorted."""
        ...

    def history(self, name: str) -> list[StoredVersion]:
        """All versions of ``name``, oldest first."""
        ...

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        """The sealed secret blobs of one version (empty if it has none)."""
        ...

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
        ...

    def get_meta(self, key: str) -> bytes | None:
        """A meta value, or ``None``."""

    def put_meta(self, key: str, value: bytes | None, *, expected: bytes | None) -> None:
        """Set (``None``: delete) ``key`` if its value is still ``expected``, else Conflict."""

    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        """Mark ``nonce`` spent until ``expires_at`` (epoch seconds); True only the first time
        (whichever replica sees it)."""
        ...

    def sessions_created_by(self, creator_key_hash: str) -> int:
        """Number of session names created by ``creator_key_hash`` (the per-creator quota)."""
        ...

    def rewrap(self, fn: Rewrapper, *, batch: int = 200) -> int:
        """Replace each sealed blob (texts, secrets, ``sealed:`` meta) by ``fn(ref, blob)``
        when that is not ``None``, in transactions of at most ``batch`` blobs; returns how
        many were replaced.  Interrupted at any point, every blob is old or new, never
        torn, and a rerun finishes the job."""
        ...

    def compact(self) -> None:
        """Make freed space unreadable (old blobs, pages of replaced rows)."""

    def check_integrity(self) -> list[str]:
        """Storage-level problems found (empty = healthy); the barrier checks the blobs."""
        ...

    def close(self) -> None:
        """Release connections."""
