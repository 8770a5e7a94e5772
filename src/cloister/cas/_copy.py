"""Copy a CAS store to another with its whole history, then verify the copy.

``cloister cas migrate --from DIR --to postgresql://…`` moves a single CAS
(SQLite in ``DIR``) onto a shared store for replicas.  Steps, in order:

1. open both stores behind the same seal (``DIR/seal.json``; replicas start
   on copies of it), each with its own keyring under the one master key;
2. carry the CAS identity over: its sealed CA and server keys and
   certificates, so clients keep the certificate they pinned; a target that
   already has another CA is refused;
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

from dataclasses import dataclass, field

from cloister import errors
from cloister.cas._identity import IDENTITY_KEYS
from cloister.cas._sealed_store import SealedStore as Store

_CA_CERT = "identity/ca-cert"


@dataclass
class CopyReport:
    sessions: int = 0
    versions: int = 0
    secrets: int = 0
    #: versions the target had already (a resumed copy)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def copy_store(source: Store, target: Store) -> CopyReport:
    """Steps 2-4 of the module docstring."""
    report = CopyReport()
    # 2. one identity: the pinned CA moves with the sessions
    theirs = target.get_sealed(_CA_CERT)
    if theirs is not None and theirs != source.get_sealed(_CA_CERT):
        raise errors.Conflict(
            "the target store already has another CAS CA; clients pinned the source's",
            details=["migrate into an empty database, or into the one you migrated before"],
        )
    for key in IDENTITY_KEYS:
        value = source.get_sealed(key)
        if value is not None and target.get_sealed(key) is None:
            target.put_sealed(key, value)
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
    report.problems = verify_copy(source, target)
    return report


def verify_copy(source: Store, target: Store) -> list[str]:
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
    if target.get_sealed(_CA_CERT) != source.get_sealed(_CA_CERT):
        problems.append("the target's CAS CA is not the source's")
    problems += [f"target: {p}" for p in target.check_integrity()]
    return problems
