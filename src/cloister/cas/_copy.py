"""Copy a CAS store to another with its whole history, then verify the copy.

``cloister cas migrate --from DIR --to postgresql://…`` moves a single CAS
(SQLite in ``DIR``) onto a shared store for replicas.  Steps, in order:

1. open both stores with the same master key (replicas all unseal it);
2. carry the CAS identity over: the CA of ``DIR`` (its key and certificate
   files) becomes the target's sealed service CA, so clients keep the
   certificate they pinned; a target that already has another CA is refused;
3. per session name, replay every version oldest first — the first as a
   create, each later one as an update on its predecessor — with its secrets
   (opened from the source, sealed again by the target; plaintext only in
   memory), keeping hashes, creators and timestamps.  A name the target already
   has must hold a prefix of the source's history (an interrupted copy
   resumes); anything else is refused;
4. verify, collecting every difference: names, each version's record and its
   secrets, the CA, and the target's own integrity check.

Stop the source CAS first: writes made during the copy are not carried over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cloister import errors
from cloister.cas._identity import CA_CERT, CA_KEY
from cloister.cas._shared_identity import CA_SERVICE_KEY
from cloister.cas.store import Store


@dataclass
class CopyReport:
    sessions: int = 0
    versions: int = 0
    secrets: int = 0
    #: versions the target had already (a resumed copy)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def source_ca(state: Path) -> bytes | None:
    """The CA of a single CAS's state directory as a service key blob, or None."""
    key, cert = state / CA_KEY, state / CA_CERT
    if not (key.exists() and cert.exists()):
        return None
    return json.dumps({"key": key.read_text(), "cert": cert.read_text()}).encode()


def _ca_cert(blob: bytes | None) -> str | None:
    return None if blob is None else str(json.loads(blob)["cert"]).strip()


def copy_store(source: Store, target: Store, ca: bytes | None) -> CopyReport:
    """Steps 2-4 of the module docstring; ``ca``: :func:`source_ca` of the source."""
    report = CopyReport()
    # 2. one identity: the pinned CA moves with the sessions
    if ca is not None:
        stored = target.add_service_key(CA_SERVICE_KEY, ca)
        if _ca_cert(stored) != _ca_cert(ca):
            raise errors.Conflict(
                "the target store already has another CAS CA; clients pinned the source's",
                details=["migrate into an empty database, or into the one you migrated before"],
            )
    # 3. replay each history
    for name in source.names():
        history = source.history(name)
        have = target.history(name)
        if have != history[: len(have)]:
            raise errors.Conflict(
                f"the target store's history of session {name!r} differs from the source's",
                details=["migrate into an empty database"],
            )
        report.sessions += 1
        report.skipped += len(have)
        for record in history[len(have):]:
            values = source.secrets(name, record.hash)
            if have or record is not history[0]:
                target.update(record, values)
            else:
                target.create(record, values)
            report.versions += 1
            report.secrets += len(values)
    # 4. verify
    report.problems = verify_copy(source, target, ca)
    return report


def verify_copy(source: Store, target: Store, ca: bytes | None) -> list[str]:
    """Every difference between ``source`` and ``target`` (empty: an exact copy)."""
    problems: list[str] = []
    names, copied = source.names(), target.names()
    problems += [f"session {n!r} is missing from the target" for n in names if n not in copied]
    problems += [f"session {n!r} is in the target only" for n in copied if n not in names]
    for name in names:
        history, other = source.history(name), target.history(name)
        if history != other:
            problems.append(f"session {name!r}: the target has {len(other)} versions that "
                            f"differ from the source's {len(history)}")
            continue
        if source.current(name) != target.current(name):
            problems.append(f"session {name!r}: the current version differs")
        for record in history:
            if source.secrets(name, record.hash) != target.secrets(name, record.hash):
                problems.append(f"session {name!r} version {record.hash}: secrets differ")
    if ca is not None and _ca_cert(target.service_key(CA_SERVICE_KEY)) != _ca_cert(ca):
        problems.append("the target's CAS CA is not the source's")
    problems += [f"target: {p}" for p in target.check_integrity()]
    return problems
