"""The barrier: a :class:`SealedStore` wraps any :class:`~cloister.cas.store.Store` so that
the backend holds only sealed blobs.

Session texts (whole, with every explicit value and ``fspf_key``), secret
values and the CAS's own private keys are sealed under the keyring's active
data key (:class:`cloister.cas._keyring.Keyring`) with an AAD naming their
row: a text is bound to its session name, hash and creator, a secret also to
its name, a meta blob to its key.  Every write advances the store's
authenticated head counter in the same transaction; ``on_commit`` (the TPM
rollback guard) hears each new value after the commit.

The CAS (:class:`cloister.cas._sessions.SessionService`, handlers) sees the
plaintext API it always had: :class:`~cloister.cas.store.SessionRecord`
with text, and secrets as plaintext bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cloister import errors
from cloister.cas._keyring import HEAD, Keyring
from cloister.cas.store import BlobRef, SessionRecord, Store, StoredVersion

_T = TypeVar("_T")


def _join(tag: bytes, parts: tuple[str, ...]) -> bytes:
    return tag + b"\0".join(p.encode("utf-8") for p in parts)


def secret_aad(session: str, session_hash: str, secret: str, creator_key_hash: str) -> bytes:
    """AAD binding a secret blob to its row and to the session's creator (who holds
    CREATOR rights): a store writer who changes the creator column makes the secrets
    unreadable.  NUL separators make the encoding unambiguous."""
    return _join(b"cloister-secret-v2\0", (session, session_hash, secret, creator_key_hash))


def text_aad(name: str, session_hash: str, creator_key_hash: str) -> bytes:
    return _join(b"cloister-text-v1\0", (name, session_hash, creator_key_hash))


def meta_aad(key: str) -> bytes:
    return _join(b"cloister-meta-v1\0", (key,))


def aad_for(ref: BlobRef) -> bytes:
    if ref.kind == "text":
        return text_aad(*ref.parts)
    if ref.kind == "secret":
        return secret_aad(*ref.parts)
    return meta_aad(*ref.parts)


class SealedStore:
    """Plaintext sessions and secrets over a backend that stores only ciphertext."""

    def __init__(
        self, backend: Store, keyring: Keyring,
        *, on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self.keyring = keyring
        self._on_commit = on_commit

    # --- writes ------------------------------------------------------------

    def _sealed(
        self, rec: SessionRecord, secrets: Mapping[str, bytes]
    ) -> tuple[StoredVersion, dict[str, bytes]]:
        self.keyring.refresh()
        seal = self.keyring.seal
        version = StoredVersion(
            rec.name, rec.hash, rec.predecessor,
            seal(rec.text.encode("utf-8"), text_aad(rec.name, rec.hash, rec.creator_key_hash)),
            rec.creator_key_hash, rec.creator_cert_pem, rec.created_at,
        )
        blobs = {
            name: seal(value, secret_aad(rec.name, rec.hash, name, rec.creator_key_hash))
            for name, value in secrets.items()
        }
        return version, blobs

    def _write(self, op: Callable[..., _T], rec: SessionRecord,
               secrets: Mapping[str, bytes], **kwargs: Any) -> _T:
        version, blobs = self._sealed(rec, secrets)
        written: list[bytes] = []

        def head(old: bytes | None) -> bytes:
            written.append(self.keyring.next_head(old))
            return written[-1]

        result = op(version, blobs, head, **kwargs)
        if self._on_commit is not None and written:
            self._on_commit(self.keyring.verify_head(written[-1]))
        return result

    def create(self, record: SessionRecord, secrets: Mapping[str, bytes],
               *, max_sessions: int | None = None) -> int:
        """See :meth:`cloister.cas.store.Store.create`: the creator's count after it."""
        return self._write(self.backend.create, record, secrets, max_sessions=max_sessions)

    def update(self, record: SessionRecord, secrets: Mapping[str, bytes]) -> None:
        self._write(self.backend.update, record, secrets)

    # --- reads -------------------------------------------------------------

    def _open(self, v: StoredVersion | None) -> SessionRecord | None:
        if v is None:
            return None
        text = self.keyring.open(v.sealed_text, text_aad(v.name, v.hash, v.creator_key_hash))
        return SessionRecord(v.name, v.hash, v.predecessor, text.decode("utf-8"),
                             v.creator_key_hash, v.creator_cert_pem, v.created_at)

    def current(self, name: str) -> SessionRecord | None:
        return self._open(self.backend.current(name))

    def current_row(self, name: str) -> StoredVersion | None:
        """The current version of ``name`` as stored, still sealed: compare it with a row
        seen before to know whether anything of it changed (:meth:`opened` opens it)."""
        return self.backend.current(name)

    def opened(self, row: StoredVersion | None) -> SessionRecord | None:
        """:meth:`current_row`'s row with its text opened (StoreError if it was altered)."""
        return self._open(row)

    def version(self, name: str, session_hash: str) -> SessionRecord | None:
        return self._open(self.backend.version(name, session_hash))

    def names(self) -> list[str]:
        return self.backend.names()

    def history(self, name: str) -> list[SessionRecord]:
        return [r for v in self.backend.history(name) if (r := self._open(v)) is not None]

    def secrets(self, name: str, session_hash: str) -> dict[str, bytes]:
        blobs = self.backend.secrets(name, session_hash)
        if not blobs:
            return {}
        version = self.backend.version(name, session_hash)
        if version is None:
            raise errors.StoreError(f"secrets of {name!r} @ {session_hash} have no session")
        creator = version.creator_key_hash
        return {
            secret: self.keyring.open(blob, secret_aad(name, session_hash, secret, creator))
            for secret, blob in blobs.items()
        }

    def session_count(self) -> int:
        return self.backend.session_count()

    # claims (singleton leases, used one-time passwords) are not secret: to the backend
    def claim(self, key: str, holder: str, until: float, now: float) -> bool:
        return self.backend.claim(key, holder, until, now)

    def extend(self, key: str, holder: str, until: float, now: float) -> bool:
        return self.backend.extend(key, holder, until, now)

    def release(self, key: str, holder: str) -> None:
        self.backend.release(key, holder)

    def sessions_created_by(self, creator_key_hash: str) -> int:
        return self.backend.sessions_created_by(creator_key_hash)

    def spend_nonce(self, nonce: bytes, expires_at: float) -> bool:
        """Spent attestation nonces are not secret: straight to the backend."""
        return self.backend.spend_nonce(nonce, expires_at)

    # --- the CAS's own sealed values and the head ------------------------------

    def get_sealed(self, key: str) -> bytes | None:
        return self.open_sealed(key, self.sealed_blob(key))

    def sealed_blob(self, key: str) -> bytes | None:
        """The stored blob of a sealed value, unopened (to notice a change cheaply)."""
        return self.backend.get_meta("sealed:" + key)

    def open_sealed(self, key: str, blob: bytes | None) -> bytes | None:
        """Open :meth:`sealed_blob`'s blob of ``key`` (StoreError if it was altered)."""
        return None if blob is None else self.keyring.open(blob, meta_aad("sealed:" + key))

    def put_sealed(self, key: str, value: bytes) -> None:
        """Store a value sealed (first writer wins: Conflict if it exists)."""
        self.keyring.refresh()
        blob = self.keyring.seal(value, meta_aad("sealed:" + key))
        self.backend.put_meta("sealed:" + key, blob, expected=None)

    def replace_sealed(self, key: str, value: bytes) -> None:
        """Store a value sealed, replacing what is there (e.g. a re-issued server key)."""
        self.keyring.refresh()
        old = self.backend.get_meta("sealed:" + key)
        blob = self.keyring.seal(value, meta_aad("sealed:" + key))
        self.backend.put_meta("sealed:" + key, blob, expected=old)

    def update_sealed(self, key: str, change: Callable[[bytes | None], bytes],
                      *, attempts: int = 8) -> bytes:
        """Replace a sealed value by ``change(current)`` with compare-and-set, retried when
        another writer (a replica) got there first; returns the value written.
        :class:`errors.Conflict` after ``attempts`` lost races."""
        name = "sealed:" + key
        for _ in range(attempts):
            self.keyring.refresh()
            old = self.backend.get_meta(name)
            current = None if old is None else self.keyring.open(old, meta_aad(name))
            value = change(current)
            try:
                self.backend.put_meta(name, self.keyring.seal(value, meta_aad(name)),
                                      expected=old)
            except errors.Conflict:
                continue
            return value
        raise errors.Conflict(f"sealed value {key!r} kept changing concurrently",
                              details=["retry the request"])

    def head_counter(self) -> int:
        """The store's authenticated write counter (StoreError if it was forged)."""
        return self.keyring.verify_head(self.backend.get_meta(HEAD))

    def set_head(self, counter: int) -> None:
        """Move the head to ``counter`` (accepting a restored copy, see the rollback guard)."""
        old = self.backend.get_meta(HEAD)
        self.backend.put_meta(HEAD, self.keyring.head(counter).encode(), expected=old)

    # --- integrity and maintenance -------------------------------------------

    def check_integrity(self) -> list[str]:
        """Storage-level problems plus every blob that does not open (nothing is changed)."""
        problems = self.backend.check_integrity()

        def check(ref: BlobRef, blob: bytes) -> None:
            try:
                self.keyring.open(blob, aad_for(ref))
            except errors.StoreError as exc:
                problems.append(f"{ref.kind} {'/'.join(ref.parts[:3])}: {exc}")

        def visit(ref: BlobRef, blob: bytes) -> bytes | None:
            check(ref, blob)
            return None

        try:
            self.backend.rewrap(visit)
            self.head_counter()
        except errors.StoreError as exc:
            problems.append(str(exc))
        return problems

    def close(self) -> None:
        self.backend.close()


def sealed_sqlite(path: Path, master_key: bytes, *, seal_id: str = "") -> SealedStore:
    """A :class:`SealedStore` over a SQLite file under ``master_key`` (embedding, tests)."""
    from cloister.cas._sqlite import SqliteStore  # noqa: PLC0415 — the barrier needs no backend

    backend = SqliteStore(path)
    return SealedStore(backend, Keyring(master_key, backend, seal_id=seal_id))
