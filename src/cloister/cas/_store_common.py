"""What the SQLite and PostgreSQL stores share: the errors they raise, opening sealed rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cloister import errors
from cloister.cas._keys import Sealer, secret_aad
from cloister.cas.store import KEY_CHECK_AAD, service_key_aad


def sealed_problems(sealer: Sealer, secret_rows: Iterable[Sequence[Any]],
                    service_rows: Iterable[Sequence[Any]]) -> list[str]:
    """One line per blob that does not open under its AAD.

    ``secret_rows``: ``(session, hash, secret, blob, creator_key_hash)``;
    ``service_rows``: ``(name, blob)``.
    """
    problems: list[str] = []
    for session, session_hash, secret, blob, creator in secret_rows:
        try:
            sealer.open(bytes(blob), secret_aad(session, session_hash, secret, creator))
        except errors.StoreError as exc:
            problems.append(f"secret {secret!r} of {session!r} @ {session_hash}: {exc}")
    for name, blob in service_rows:
        try:
            sealer.open(bytes(blob), service_key_aad(name))
        except errors.StoreError as exc:
            problems.append(f"service key {name!r}: {exc}")
    return problems


def check_master_key(sealer: Sealer, blob: bytes, where: str) -> None:
    """Refuse a master key that does not open the store's key-check marker."""
    try:
        sealer.open(blob, KEY_CHECK_AAD)
    except errors.StoreError:
        raise errors.ConfigError(
            f"the master key does not open the CAS store {where}",
            details=["start the CAS (every replica) with the master key this store was "
                     "created with"],
        ) from None


def name_taken(name: str) -> errors.Conflict:
    return errors.Conflict(
        f"session {name!r} already exists",
        details=["to change it, send an update whose predecessor is its hash"],
    )


def version_taken(name: str, session_hash: str) -> errors.Conflict:
    return errors.Conflict(f"session {name!r} already has a version with hash {session_hash}")


def no_such_session(name: str) -> errors.NotFound:
    return errors.NotFound(
        f"session {name!r} does not exist",
        details=["create it first (a body without predecessor)"],
    )


def stale_predecessor(name: str, predecessor: str | None, current: str) -> errors.Conflict:
    return errors.Conflict(
        f"session {name!r} changed: predecessor {predecessor} is not the current hash {current}",
        details=["read the session again and base the update on its hash"],
    )
