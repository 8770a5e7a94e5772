"""Enrolling platforms: the quoting keys whose evidence counts for an identity's sessions.

A ``simulation`` quote is signed by a LAS's software key, and a ``tpm``
quote without an EK chain by whatever AK it carries: the signature proves
nothing until someone vouches for the key.  A service's ``platforms:`` list
does so for that service; an enrolment does so for every session its
identity created.  So only the session's owner (its creator) can make a
platform count for it, and another tenant's enrolments never do.

- ``POST /v1/platforms`` (client certificate) ``{"platform_id": <64 hex>,
  "label": <text, optional>}`` → 201 ``{"platform_id", "owner", "created"}``
  (200 with ``created: false`` when it was enrolled already).  Audited.
- ``GET /v1/platforms`` (client certificate) → ``{"platforms": [{"platform_id",
  "label"}]}``: the caller's own enrolments.
- ``DELETE /v1/platforms/<platform id>`` (client certificate) → 200
  ``{"platform_id", "owner", "removed"}``: the caller withdraws its enrolment (a
  node retired or its key suspected); from then on that key's evidence no longer
  counts for the caller's sessions (``removed: false`` when it was not enrolled by
  the caller; another owner's enrolment of the same platform is untouched).  Audited.

An owner's enrolments are one JSON map ``{platform id: label}`` kept sealed
behind the store's barrier (meta ``sealed:platforms:<owner>``, AAD naming that
key), so whoever can write the store but lacks the data key cannot add one, nor
move one to another owner.  Adding is a compare-and-set retried on a lost race,
so replicas sharing a PostgreSQL store never drop each other's enrolments.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from cloister import errors
from cloister.cas._http import Request, Response

if TYPE_CHECKING:
    from cloister.cas._app import AppContext
    from cloister.cas._sealed_store import SealedStore

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_LABEL = 200
_SEEN_EXTENSION = "platforms.seen"
#: owners whose decoded enrolments :func:`enrolled_by` keeps
_SEEN_MAX = 10_000


def post_platform(ctx: AppContext, req: Request) -> Response:
    caller = req.require_caller()
    try:
        body = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise errors.RequestError("enrolment request is not JSON") from None
    if not isinstance(body, dict) or set(body) - {"platform_id", "label"}:
        raise errors.RequestError('enrolment request must be {"platform_id", optional "label"}')
    platform_id, label = body.get("platform_id"), body.get("label", "")
    if not isinstance(platform_id, str) or not _HEX64.fullmatch(platform_id.lower()):
        raise errors.RequestError(
            "platform_id must be 64 hex digits",
            details=["`cloister las platform-id` on the node prints it"])
    if not isinstance(label, str) or len(label) > MAX_LABEL or not label.isprintable():
        raise errors.RequestError(f"label must be printable text of at most {MAX_LABEL} "
                                  "characters")
    created = enroll(ctx.store, caller.key_hash, platform_id.lower(), label)
    ctx.audit.record(caller=caller.key_hash, action="enroll-platform", session=None,
                     decision="allow", reason="" if created else "already enrolled",
                     platform=platform_id.lower(), label=label)
    return Response.json(201 if created else 200, {
        "platform_id": platform_id.lower(), "owner": caller.key_hash, "created": created})


def delete_platform(ctx: AppContext, req: Request) -> Response:
    caller = req.require_caller()
    platform_id = req.params["platform_id"].lower()
    if not _HEX64.fullmatch(platform_id):
        raise errors.RequestError(
            "the platform id in the path must be 64 hex digits",
            details=["`cloister platform list` prints the enrolled ones"])
    removed = withdraw(ctx.store, caller.key_hash, platform_id)
    ctx.audit.record(caller=caller.key_hash, action="withdraw-platform", session=None,
                     decision="allow", reason="" if removed else "was not enrolled",
                     platform=platform_id)
    return Response.json(200, {"platform_id": platform_id, "owner": caller.key_hash,
                               "removed": removed})


def get_platforms(ctx: AppContext, req: Request) -> Response:
    caller = req.require_caller()
    enrolled = enrolled_platforms(ctx.store, caller.key_hash)
    return Response.json(200, {"platforms": [
        {"platform_id": pid, "label": label} for pid, label in sorted(enrolled.items())]})


def enrolled_by(ctx: AppContext, owner: str) -> frozenset[str]:
    """The platform ids ``owner`` (a session's creator) enrolled, as stored now.

    One read of the sealed blob per call; it is opened and decoded only when it differs
    from the one last seen for ``owner`` (platform ids are not secret: kept in memory, at
    most :data:`_SEEN_MAX` owners)."""
    key = _key(owner)
    blob = ctx.store.sealed_blob(key)
    seen: dict[str, tuple[bytes | None, frozenset[str]]] = ctx.extensions.setdefault(
        _SEEN_EXTENSION, {})
    found = seen.get(owner)
    if found is not None and found[0] == blob:
        return found[1]
    ids = frozenset(_decoded(ctx.store.open_sealed(key, blob)))
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen[owner] = (blob, ids)
    return ids


def _key(owner: str) -> str:
    return "platforms:" + owner


def _decoded(blob: bytes | None) -> dict[str, str]:
    if blob is None:
        return {}
    try:
        found = json.loads(blob)
    except ValueError:
        raise errors.StoreError("the enrolled platforms do not decode") from None
    if not isinstance(found, dict):
        raise errors.StoreError("the enrolled platforms are not a map")
    return {str(k): str(v) for k, v in found.items()}


def enrolled_platforms(store: SealedStore, owner: str) -> dict[str, str]:
    """``{platform id: label}`` that ``owner`` enrolled."""
    return _decoded(store.get_sealed(_key(owner)))


def enroll(store: SealedStore, owner: str, platform_id: str, label: str) -> bool:
    """Record that ``owner`` vouches for ``platform_id``; False if it already had."""
    created = False

    def add(blob: bytes | None) -> bytes:
        nonlocal created
        found = _decoded(blob)
        created = platform_id not in found
        found.setdefault(platform_id, label)
        return json.dumps(found, sort_keys=True).encode()

    store.update_sealed(_key(owner), add)
    return created


def withdraw(store: SealedStore, owner: str, platform_id: str) -> bool:
    """Record that ``owner`` no longer vouches for ``platform_id``; False if it did not."""
    removed = False

    def drop(blob: bytes | None) -> bytes:
        nonlocal removed
        found = _decoded(blob)
        removed = found.pop(platform_id, None) is not None
        return json.dumps(found, sort_keys=True).encode()

    store.update_sealed(_key(owner), drop)
    return removed
