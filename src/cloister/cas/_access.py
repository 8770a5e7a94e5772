"""Access-policy decisions: is this caller in this ``access_policy`` list?

Entries (SCONE 0.3): ``ANY`` (everyone with a client certificate), ``NONE``
(nobody, not even the creator), ``CREATOR`` (the key that created the
session), a PEM certificate (matched by its public key, so a re-issued
certificate for the same key still matches), or a key hash (SHA-256 hex of
the SubjectPublicKeyInfo, as ``cloister`` prints it).  Anything else —
unresolved ``$$SCONE::…$$`` references, ``signer:`` entries — never matches:
unknown means deny.  Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cloister import errors
from cloister.cas._http import Caller, key_hash_of_pem

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def entry_matches(entry: str, caller: Caller, creator_key_hash: str) -> bool:
    entry = entry.strip()
    if entry == "ANY":
        return True
    if entry in ("NONE", ""):
        return False
    if entry == "CREATOR":
        return caller.key_hash == creator_key_hash
    if entry.startswith("-----BEGIN CERTIFICATE-----"):
        try:
            return key_hash_of_pem(entry) == caller.key_hash
        except errors.PolicyError:
            return False
    if _HEX64.fullmatch(entry):
        return entry.lower() == caller.key_hash
    return False


def is_allowed(entries: Iterable[str], caller: Caller, creator_key_hash: str) -> bool:
    """True when some entry admits ``caller``; ``NONE`` alone (or an empty list) admits nobody."""
    return any(entry_matches(e, caller, creator_key_hash) for e in entries)


def require(
    entries: Iterable[str], caller: Caller, creator_key_hash: str, *, action: str, session: str
) -> None:
    """Raise :class:`errors.AccessDenied` unless ``caller`` may do ``action`` on ``session``."""
    entries = tuple(entries)
    if is_allowed(entries, caller, creator_key_hash):
        return
    hint = (
        "the access policy says NONE: nobody may do this"
        if entries == ("NONE",)
        else f"your key hash {caller.key_hash} is not in access_policy.{action}"
    )
    raise errors.AccessDenied(f"not allowed to {action} session {session!r}", details=[hint])
