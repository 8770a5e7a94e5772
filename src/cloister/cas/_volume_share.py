"""Volumes shared between sessions (SCONE: volume ``export`` / ``import``).

An importing session's volume is opened with the exporter's key: the key the
exporter's CAS keeps for that volume (generated or explicit ``fspf_key``).
The export must name the importer by the rule every export follows (see
:meth:`SessionService.admits`); ``volume_alias`` renames the volume for one
importer, which must then import it by the alias (the original name is not
visible to it).  Resolved when the importer is written and again at every
release, like secret imports, so a withdrawn export stops the release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloister import errors
from cloister.policy import Session, find_references
from cloister.policy._model import VOLUME_KEY_PREFIX, Volume

if TYPE_CHECKING:
    from cloister.cas._http import Caller
    from cloister.cas._sessions import SessionService
    from cloister.cas.store import SessionRecord


def volume_keys(svc: SessionService, session: Session, importer: Caller) -> dict[str, bytes]:
    """``{"~volume.NAME": key material}`` for every imported volume; every problem at once."""
    keys: dict[str, bytes] = {}
    problems: list[str] = []
    for volume in session.volumes:
        source = volume.import_
        if source is None:
            continue
        where = (f"volume {volume.name!r} of session {session.name!r} imports volume "
                 f"{source.volume!r} from session {source.session!r}")
        record = svc.lookup(source.session)
        if record is None:
            problems.append(f"{where}, which does not exist: create {source.session!r} first")
            continue
        exporter = svc.parsed(record)
        shared = _exported(svc, record, source.volume, session, importer)
        if shared is None:
            problems.append(f"{where}, which does not export it to {session.name!r} (an export "
                            "to a session of another owner must pin its session_hash)")
            continue
        material = _key_material(exporter, shared, svc.store.secrets(record.name, record.hash))
        if material is None:
            problems.append(f"{where}, whose key is not kept by the CAS (it is imported)")
            continue
        keys[VOLUME_KEY_PREFIX + volume.name] = material
    if problems:
        first, *rest = problems
        raise errors.SecretError(first, details=rest)
    return keys


def _exported(
    svc: SessionService, record: SessionRecord, name: str, session: Session, importer: Caller
) -> Volume | None:
    """The exporter's volume that ``session`` may import as ``name`` (its name or alias)."""
    for volume in svc.parsed(record).volumes:
        for export in volume.export:
            if (export.alias or volume.name) == name and svc.admits(
                (export.target,), session, importer, record
            ):
                return volume
    return None


def _key_material(exporter: Session, volume: Volume, values: dict[str, bytes]) -> bytes | None:
    key = volume.fspf_key
    if key is not None and key.startswith("$$"):
        refs = list(find_references(key, {s.name for s in exporter.secrets}))
        return values.get(refs[0].secret) if len(refs) == 1 else None
    return values.get(VOLUME_KEY_PREFIX + volume.name)
