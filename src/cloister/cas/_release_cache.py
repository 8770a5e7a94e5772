"""The release cache: what the attestation of a session version releases, kept in memory,
so that repeated attestations neither open, decode nor render that version's secrets again.

Per session name it keeps one :class:`Release`: the parsed session, its secret values
decoded (own, imported, volume keys) and, for every service released from it, the service
with its attestation inputs resolved and its configuration rendered (JSON).

Invariants:

1. **never stale** — a release is keyed by the stored rows it was derived from: the
   session's current version and the current version of every session its secret,
   volume and config-fragment imports looked up (or their absence), as
   :meth:`~cloister.cas._sessions.SessionService.released` reports them.  Every use
   reads those current rows again and compares them whole (hash, creator, sealed text,
   time): an update — by this CAS process, another one, or a replica sharing the store —
   is seen by the next attestation.  The rows determine the release (a stored version's
   secrets never change, see :mod:`cloister.cas.store`), so a hit is what a fresh
   derivation would give.
2. **only what was released** — a release enters the cache only after a decision allowed
   it (:meth:`ReleaseCache.keep`), and a service's configuration only once that service
   was released: a refused caller leaves nothing behind.
3. **memory only, bounded** — never written to disk or logged; at most
   ``Limits.release_cache_sessions`` sessions, the least recently used dropped first.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloister.cas._release import build_config, resolve_service
from cloister.secrets import SecretValue

if TYPE_CHECKING:
    from cloister.cas._sessions import Released, SessionService
    from cloister.policy import Service, Session


@dataclass(frozen=True)
class _Prepared:
    """One released service: its resolved attestation inputs and its configuration."""

    resolved: Service
    config: dict[str, Any]
    payload: bytes  # ``config`` as compact JSON


class Release:
    """One session version as the release path needs it (module doc)."""

    def __init__(self, released: Released) -> None:
        self.session: Session = released.session
        self.rows = released.rows
        first = released.rows[0][1]
        assert first is not None and first.name == released.session.name
        #: key hash of the session's creator, whose enrolled platforms count for it
        self.owner = first.creator_key_hash
        self.values = {name: SecretValue.from_bytes(blob)
                       for name, blob in released.values.items()}
        self._services: dict[str, _Prepared] = {}

    def __repr__(self) -> str:
        return f"Release({self.session.name!r}, <values hidden>)"

    def resolved(self, service: Service) -> Service:
        """``service`` with the references in its attestation inputs rendered (raises as
        :func:`~cloister.cas._release.resolve_service`)."""
        prepared = self._services.get(service.name)
        if prepared is not None:
            return prepared.resolved
        return resolve_service(self.session, service, self.values)

    def payload(self, service: Service, resolved: Service,
                lease: dict[str, Any] | None = None) -> bytes:
        """The configuration of ``service`` as JSON, ``lease`` added; call it only for a
        release the decision allowed (raises as :func:`~cloister.cas._release.build_config`)."""
        prepared = self._services.get(service.name)
        if prepared is None:
            config = build_config(self.session, service, self.values)
            prepared = self._services.setdefault(service.name, _Prepared(
                resolved, config, _dumps(config)))
        if lease is None:
            return prepared.payload
        return _dumps({**prepared.config, "lease": lease})


def _dumps(config: dict[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":")).encode("utf-8")


class ReleaseCache:
    """Releases by session name, at most ``size`` of them (module doc)."""

    def __init__(self, sessions: SessionService, *, size: int) -> None:
        self._sessions = sessions
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Release] = OrderedDict()
        #: lookups answered from the cache, and derived afresh (for tests and metrics)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Release:
        """The release of session ``name`` as it is stored now: the cached one while every
        row it came from is unchanged, else derived afresh (not cached: see :meth:`keep`).
        Raises as :meth:`~cloister.cas._sessions.SessionService.released`."""
        with self._lock:
            found = self._entries.get(name)
        if found is not None and self._fresh(found):
            with self._lock:
                self.hits += 1
                if name in self._entries:
                    self._entries.move_to_end(name)
            return found
        release = Release(self._sessions.released(name))
        with self._lock:
            self.misses += 1
            if found is not None and self._entries.get(name) is found:
                del self._entries[name]  # stale: its secrets leave memory with it
        return release

    def keep(self, release: Release) -> None:
        """Cache ``release`` — only after a decision allowed it (invariant 2)."""
        name = release.session.name
        with self._lock:
            self._entries[name] = release
            self._entries.move_to_end(name)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def _fresh(self, release: Release) -> bool:
        current = self._sessions.store.current_row
        return all(current(name) == row for name, row in release.rows)


__all__ = ["Release", "ReleaseCache"]
