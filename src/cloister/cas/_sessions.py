"""Session create / update / read and public values: the CAS's session semantics.

Invariants:
- the caller's key hash decides everything; nothing in the request body is
  trusted about who is asking (a ``creator:`` key in the text is ignored —
  the creator is the key that created the session and is carried over to
  every later version; each upload's key is in the audit log);
- create: the name must be free; a namespaced name ``ns/x`` needs the parent
  ``ns`` to exist and the caller to be in its ``create_sessions`` list;
- update: the caller must be in the *current* version's ``update`` list and
  ``predecessor`` must be the current hash (checked again atomically by the
  store, so of concurrent updates exactly one wins);
- imports are resolved when the importing version is written and again at
  every release: the exporting session must already exist and export the
  secret to the importer (:class:`errors.SecretError` otherwise, naming both
  sessions and the secret).  An import may therefore not name a session
  created later — create exporters first (redis before flask in SCONE's
  example);
- generated secret values never leave through this class except
  :meth:`released_values` (for attestation) and :meth:`public_values`
  (public parts of ``export_public`` secrets).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from cloister import errors
from cloister.cas import _access
from cloister.cas._audit import AuditLog
from cloister.cas._engine import SecretEngine
from cloister.cas._http import Caller
from cloister.cas._limits import Limits
from cloister.cas._sealed_store import SealedStore
from cloister.cas._store_common import quota_exceeded
from cloister.cas._volume_share import volume_keys
from cloister.cas.store import SessionRecord, StoredVersion
from cloister.policy import ExportTarget, Secret, SecretKind, Session, load_session

#: creators whose session counts are kept in memory (beyond: forgotten, read again)
_CREATORS_KNOWN = 4096


def _creator_of(record: SessionRecord) -> Caller:
    return Caller(key_hash=record.creator_key_hash, cert_pem=record.creator_cert_pem)


def _load(text: str) -> Session:
    """:func:`load_session`, with any YAML-library failure kept a 400, never a 500."""
    try:
        return load_session(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise errors.PolicyError(
            f"the session is not valid YAML{where}",
            details=["remove control characters and check the YAML syntax"],
        ) from None


def _origin(session: Session, name: str) -> str:
    secret = session.secret(name)
    source = secret.import_ if secret is not None else None
    if source is None:
        return f"config-fragment {name!r}"
    return f"config-fragment {source.secret!r} of session {source.session!r}"


@dataclass(frozen=True)
class Written:
    record: SessionRecord
    created: bool


@dataclass(frozen=True)
class Released:
    """What :meth:`SessionService.released` read: the session, ALL its secret material, and
    each distinct stored row of a session looked up on the way (None: it did not exist),
    the released session's own first."""

    session: Session
    values: dict[str, bytes]
    rows: tuple[tuple[str, StoredVersion | None], ...]


class SessionService:
    def __init__(
        self,
        store: SealedStore,
        engine: SecretEngine,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
        limits: Limits | None = None,
        creators: frozenset[str] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.audit = audit
        self._clock = clock
        self.limits = limits or Limits()
        #: key hashes allowed to create top-level sessions (None: every identity)
        self.creators = creators
        #: per thread, sessions whose imported fragments are being resolved (import cycles)
        self._local = threading.local()
        #: sessions created per creator key hash, at least (see :meth:`_created_by`)
        self._created: dict[str, int] = {}

    # --- parsing (cached: stored texts are immutable per hash) ---------------

    @functools.lru_cache(maxsize=512)  # noqa: B019 — the service lives as long as the process
    def _parsed(self, name: str, session_hash: str, text: str) -> Session:
        session = load_session(text)
        # the hash is in every secret's AAD: checking the text against it ties the policy
        # to its secrets, so a store writer cannot swap in a policy of their own
        if session.digest != session_hash:
            raise errors.StoreError(
                f"stored session {name!r} version {session_hash[:12]}… fails its integrity "
                "check (its text does not match its hash): restore the store from a backup"
            )
        return session

    @functools.lru_cache(maxsize=512)  # noqa: B019 — as above
    def _with_fragments(
        self, text: str, fragments: tuple[tuple[str, tuple[str, str]], ...]
    ) -> Session:
        return load_session(text, fragments=dict(fragments))

    def parsed(self, record: SessionRecord) -> Session:
        """The stored version, with its imported config-fragments as they are now."""
        session = self._parsed(record.name, record.hash, record.text)
        return self._completed(session, record.text, _creator_of(record))

    def _completed(self, session: Session, text: str, importer: Caller) -> Session:
        """``session`` loaded again with its imported config-fragments (SCONE 0.3.10):
        resolved like any import, then validated where they stand."""
        completing: set[str] = self._local.__dict__.setdefault("completing", set())
        if session.name in completing:  # any version of it: it depends on itself
            raise errors.SecretError(
                f"config-fragment imports of session {session.name!r} form a cycle"
            )
        wanted = {s.name for s in session.secrets
                  if s.kind is SecretKind.CONFIG_FRAGMENT and s.import_ is not None}
        if not wanted:
            return session
        completing.add(session.name)
        try:
            materials = self._resolve_imports(session, importer, only=wanted)
        finally:
            completing.discard(session.name)
        fragments = tuple(sorted(
            (name, (self.engine.fragment_text(material), _origin(session, name)))
            for name, material in materials.items()
        ))
        return self._with_fragments(text, fragments)

    def lookup(self, name: str) -> SessionRecord | None:
        """The current version of ``name`` (None: no such session); while
        :meth:`released` runs in this thread, the stored row is noted as one it read."""
        row = self.store.current_row(name)
        seen: dict[tuple[str, StoredVersion | None], None] | None = getattr(
            self._local, "seen", None)
        if seen is not None:  # a name read twice with different rows: both noted
            seen[(name, row)] = None
        return self.store.opened(row)

    def _current(self, name: str) -> SessionRecord:
        record = self.lookup(name)
        if record is None:
            raise errors.NotFound(f"session {name!r} does not exist")
        return record

    # --- create / update ----------------------------------------------------

    def write(self, text: str, caller: Caller) -> Written:
        """Create (no ``predecessor``) or update a session from its YAML ``text``."""
        try:
            session = _load(text)
            if session.unserved:
                first, *rest = session.unserved
                raise errors.UnservedFeature(first, details=rest)
        except errors.PolicyError as exc:
            self._deny(caller, "write", None, "invalid", exc.message)
            raise
        action = "create" if session.predecessor is None else "update"
        try:
            self._within_limits(session)
            self.audit.require_writable()  # a write the audit log cannot show waits (507)
            owner = caller
            if session.predecessor is not None:
                owner = _creator_of(self._current(session.name))
            session = self._completed(session, text, owner)
            if session.predecessor is None:
                record = self._create(session, text, caller)
            else:
                record = self._update(session, text, caller)
        except errors.Error as exc:
            self._deny(caller, action, session.name, exc.code, exc.message)
            raise
        self.audit.record(
            caller=caller.key_hash, action=action, session=session.name, decision="allow",
            reason="", hash=record.hash,
        )
        return Written(record, created=session.predecessor is None)

    def _within_limits(self, session: Session) -> None:
        count = len(session.secrets) + len(session.volumes)
        limit = self.limits.max_secrets_per_session
        if count > limit:
            raise errors.QuotaExceeded(
                f"session {session.name!r} has {count} secrets and volume keys; this CAS "
                f"allows {limit} (limit max_secrets_per_session)",
                details=["split the session, or ask the CAS operator to raise the limit"],
            )

    def _may_create(self, session: Session, caller: Caller, top_level: bool) -> None:
        """The CAS-level rules for a new name: the creators list, the per-creator quota."""
        if top_level and self.creators is not None and caller.key_hash not in self.creators:
            raise errors.AccessDenied(
                f"not allowed to create top-level session {session.name!r}: this CAS "
                "admits only the identities in its creators list",
                details=[f"your key hash {caller.key_hash} is not in the list given with "
                         "cloister cas serve --creators"],
            )
        # refused before any key is made when known to be at the quota; the store
        # checks it again, exactly, in the write's transaction
        limit = self.limits.max_sessions_per_creator
        if self._created_by(caller.key_hash) >= limit:
            raise quota_exceeded(limit)

    def _created_by(self, creator: str) -> int:
        """A lower bound of the names ``creator`` has created: read from the store once, then
        the count each create returns (counts only grow; other processes may add to them)."""
        known = self._created.get(creator)
        if known is None:
            known = self.store.sessions_created_by(creator)
            self._count_created(creator, known)
        return known

    def _count_created(self, creator: str, count: int) -> None:
        if len(self._created) >= _CREATORS_KNOWN and creator not in self._created:
            self._created.clear()
        if count > self._created.get(creator, -1):
            self._created[creator] = count

    def _deny(
        self, caller: Caller | None, action: str, name: str | None, code: str, why: str
    ) -> None:
        self.audit.record(
            caller=caller.key_hash if caller else None, action=action, session=name,
            decision="deny", reason=f"{code}: {why}",
        )

    def _create(self, session: Session, text: str, caller: Caller) -> SessionRecord:
        if self.store.current(session.name) is not None:
            raise errors.Conflict(
                f"session {session.name!r} already exists",
                details=["to change it, send an update whose predecessor is its current hash"],
            )
        parent_name, _, _ = session.name.rpartition("/")
        self._may_create(session, caller, top_level=not parent_name)
        if parent_name:
            parent = self.store.current(parent_name)
            if parent is None:
                raise errors.NotFound(
                    f"namespace {parent_name!r} of session {session.name!r} does not exist",
                    details=[f"create the session {parent_name!r} first"],
                )
            _access.require(
                self.parsed(parent).access_policy.effective_create_sessions, caller,
                parent.creator_key_hash, action="create_sessions", session=parent_name,
            )
        imported = self._resolve_imports(session, caller)
        volume_keys(self, session, caller)  # the exporters must exist and export to it
        secrets = self.engine.generate(
            session, imported=imported, previous=None, previous_values={}
        )
        record = SessionRecord(
            name=session.name, hash=session.digest, predecessor=None, text=text,
            creator_key_hash=caller.key_hash, creator_cert_pem=caller.cert_pem,
            created_at=self._clock(),
        )
        limit = self.limits.max_sessions_per_creator
        try:
            count = self.store.create(record, secrets, max_sessions=limit)
        except errors.QuotaExceeded:
            self._count_created(caller.key_hash, limit)
            raise
        self._count_created(caller.key_hash, count)
        return record

    def _update(self, session: Session, text: str, caller: Caller) -> SessionRecord:
        current = self._current(session.name)
        old = self.parsed(current)
        _access.require(
            old.access_policy.update, caller, current.creator_key_hash,
            action="update", session=session.name,
        )
        if current.hash != session.predecessor:
            raise errors.Conflict(
                f"session {session.name!r} changed: predecessor {session.predecessor} "
                f"is not the current hash {current.hash}",
                details=["read the session again and base the update on its current hash"],
            )
        imported = self._resolve_imports(session, _creator_of(current))
        volume_keys(self, session, _creator_of(current))
        secrets = self.engine.generate(
            session, imported=imported, previous=old,
            previous_values=self.store.secrets(current.name, current.hash),
        )
        record = SessionRecord(
            name=session.name, hash=session.digest, predecessor=current.hash, text=text,
            creator_key_hash=current.creator_key_hash, creator_cert_pem=current.creator_cert_pem,
            created_at=self._clock(),
        )
        self.store.update(record, secrets)
        return record

    # --- imports --------------------------------------------------------------

    def _resolve_imports(
        self, session: Session, importer: Caller, *, only: set[str] | None = None
    ) -> dict[str, bytes]:
        """Imported material keyed by the importing secret's name; every problem at once.

        ``importer`` is the importing session's creator.  An export admits an
        importer only if the export names its session (or namespace) and
        either pins the importer's ``session_hash`` or the importer's creator
        is the exporter's creator or in its ``update`` list: an export to a
        session that does not exist yet cannot be claimed by whoever creates
        that name first.  A certificate brings its private key only when the
        key is exported to the importer by the same rule.
        """
        resolved: dict[str, bytes] = {}
        problems: list[str] = []
        for secret in session.secrets:
            src = secret.import_
            if src is None or (only is not None and secret.name not in only):
                continue
            where = f"secret {secret.name!r} of session {session.name!r} imports " \
                    f"{src.secret!r} from session {src.session!r}"
            record = self.lookup(src.session)
            if record is None:
                problems.append(f"{where}, which does not exist: create {src.session!r} first")
                continue
            exporter = self.parsed(record)
            exported = exporter.secret(src.secret)
            if exported is None or not self._exports_to(exported, session, importer, record):
                problems.append(
                    f"{where}, which does not export it to {session.name!r} (an export to a "
                    "session of another owner must pin its session_hash)"
                )
                continue
            values = self.store.secrets(record.name, record.hash)
            material = values.get(src.secret)
            if material is None:
                problems.append(f"{where}, which holds no value for it (it is itself imported)")
                continue
            if secret.kind is not None and self.engine.kind(material) != secret.kind.value:
                problems.append(
                    f"{where}: kind {secret.kind.value} expected, the export is "
                    f"{self.engine.kind(material)}"
                )
                continue
            key_name = exported.private_key
            key_secret = exporter.secret(key_name) if key_name else None
            with_key = key_secret is not None and self._exports_to(
                key_secret, session, importer, record
            )
            resolved[secret.name] = self.engine.for_import(material, with_key=with_key)
        if problems:
            first, *rest = problems
            raise errors.SecretError(first, details=rest)
        return resolved

    def _exports_to(
        self, exported: Secret, session: Session, importer: Caller, exporter: SessionRecord
    ) -> bool:
        """Whether ``exported`` (of ``exporter``) may be imported by ``session`` (rule above)."""
        return self.admits(exported.export, session, importer, exporter)

    def admits(
        self,
        targets: tuple[ExportTarget, ...],
        session: Session,
        importer: Caller,
        exporter: SessionRecord,
    ) -> bool:
        """Whether an export to ``targets`` (of ``exporter``) admits ``session`` (rule above)."""
        trusted_owner = importer.key_hash == exporter.creator_key_hash or _access.is_allowed(
            self.parsed(exporter).access_policy.update, importer, exporter.creator_key_hash
        )
        return any(
            target.admits(session.name)
            and target.session_hash in (None, session.digest)
            and (target.session_hash is not None or trusted_owner)
            for target in targets
        )

    # --- reads ----------------------------------------------------------------

    def read(self, name: str, caller: Caller, session_hash: str | None = None) -> SessionRecord:
        """A version's text for a caller in the current ``read`` list (history too)."""
        current = self._current(name)
        try:
            _access.require(
                self.parsed(current).access_policy.read, caller, current.creator_key_hash,
                action="read", session=name,
            )
        except errors.AccessDenied as exc:
            self._deny(caller, "read", name, exc.code, exc.message)
            raise
        record = current if session_hash in (None, current.hash) else None
        if record is None:
            assert session_hash is not None
            record = self.store.version(name, session_hash.lower())
            if record is None:
                raise errors.NotFound(f"session {name!r} has no version with hash {session_hash}")
        self.audit.record(
            caller=caller.key_hash, action="read", session=name, decision="allow", reason="",
            hash=record.hash,
        )
        return record

    def readable(self, caller: Caller) -> list[str]:
        """Names of the sessions whose current ``read`` list admits ``caller``, sorted."""
        names = []
        for name in self.store.names():
            current = self.store.current(name)
            if current is not None and _access.is_allowed(
                self.parsed(current).access_policy.read, caller, current.creator_key_hash
            ):
                names.append(name)
        self.audit.record(caller=caller.key_hash, action="list", session=None, decision="allow",
                          reason=f"{len(names)} readable")
        return sorted(names)

    def public_values(self, name: str, secret: str | None = None) -> dict[str, dict[str, str]]:
        """``{secret: {"kind", "value"}}`` for ``export_public`` secrets: public parts only.

        An unknown session answers as one without public secrets: an anonymous
        caller learns nothing about which sessions exist.
        """
        try:
            session, values = self.released_values(name)
        except errors.NotFound:
            session, values = None, {}
        wanted = [s for s in session.secrets if s.export_public
                  and (secret in (None, s.name))] if session is not None else []
        if secret is not None and not wanted:
            raise errors.NotPublic(  # the same answer whether or not the session exists
                f"no public secret {secret!r} in that session",
                details=["only secrets with export_public: true can be read without a client cert"],
            )
        out: dict[str, dict[str, str]] = {}
        for item in wanted:
            material = values.get(item.name)
            if material is None:
                continue
            try:
                kind, value = self.engine.public_part(material)
            except errors.SecretError:
                continue  # ascii/binary have no public part: never shown, not even if marked
            out[item.name] = {"kind": kind, "value": value}
        return out

    def released_values(self, name: str) -> tuple[Session, dict[str, bytes]]:
        """The current session and ALL its secret material (own + imports, re-checked).

        For the attestation release path only; never return this to an HTTP caller as is.
        """
        current = self._current(name)
        session = self.parsed(current)
        values = self.store.secrets(current.name, current.hash)
        if any(s.import_ is not None for s in session.secrets):
            values.update(self._resolve_imports(session, _creator_of(current)))
        values.update(volume_keys(self, session, _creator_of(current)))
        return session, values

    def released(self, name: str) -> Released:
        """:meth:`released_values`, with the stored rows of every session it read: the
        result is a function of those rows alone (a version's secrets never change), so
        it holds for as long as they are unchanged (see :mod:`cloister.cas._release_cache`)."""
        seen: dict[tuple[str, StoredVersion | None], None] = {}
        self._local.seen = seen
        try:
            session, values = self.released_values(name)
        finally:
            del self._local.seen
        return Released(session, values, tuple(seen))
