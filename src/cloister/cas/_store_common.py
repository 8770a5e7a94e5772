"""What the SQLite and PostgreSQL stores share: the errors they raise."""

from __future__ import annotations

from cloister import errors


def name_taken(name: str) -> errors.Conflict:
    return errors.Conflict(
        f"session {name!r} already exists",
        details=["to change it, send an update whose predecessor is its hash"],
    )


def quota_exceeded(limit: int) -> errors.QuotaExceeded:
    return errors.QuotaExceeded(
        f"your identity has created {limit} sessions, the most this CAS allows "
        "(limit max_sessions_per_creator)",
        details=["ask the CAS operator to raise the limit"],
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
