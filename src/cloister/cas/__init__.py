"""The CAS: configuration and attestation service (server side).

Public API:

- :class:`CASServer` / :class:`ServerConfig` — ``cloister cas serve``: state
  directory, CAS identity, store, HTTPS (cheroot + pyOpenSSL, self-signed
  client certificates welcome);
- :class:`Limits` — every protective limit, with its default;
- :func:`create_app` — the WSGI app alone, for embedding and tests;
- :class:`~cloister.cas.store.Store` (the backend protocol: sealed blobs only),
  :class:`SqliteStore`, and :class:`SealedStore` (the barrier over any backend);
- :class:`Keyring` — the unsealed master key and data keys; ``derive_key(purpose)``
  gives other parts of the CAS keys of their own;
- :func:`init_state`, :func:`migrate_state`, :func:`rotate_key` — ``cloister cas init``,
  ``migrate-state``, ``rotate-key``;
- :class:`Route` / :class:`Auth` — add endpoints (see :mod:`cloister.cas._routes`);
- :func:`check_state` — ``PRAGMA integrity_check`` plus opening every secret;
- :func:`key_hash` — a certificate holder's identity (SHA-256 of its SPKI).
"""

from __future__ import annotations

from collections.abc import Sequence

from cloister._pki import key_hash
from cloister.cas._app import AppContext, CASApp
from cloister.cas._audit import AuditLog
from cloister.cas._engine import SecretEngine
from cloister.cas._http import Caller, Request, Response, key_hash_of_pem
from cloister.cas._identity import CASIdentity
from cloister.cas._keyring import Keyring
from cloister.cas._limits import Limits
from cloister.cas._routes import Auth, Route, route_table
from cloister.cas._sealed_store import SealedStore, sealed_sqlite
from cloister.cas._server import CASServer, ServerConfig, build_context, check_state, open_store
from cloister.cas._sqlite import SqliteStore
from cloister.cas._state import SealOptions, init_state, migrate_state, rotate_key
from cloister.cas.store import SessionRecord, Store, StoredVersion


def create_app(
    store: SealedStore,
    engine: SecretEngine,
    audit: AuditLog,
    *,
    identity: CASIdentity | None = None,
    extra_routes: Sequence[Route] = (),
    limits: Limits | None = None,
) -> CASApp:
    """The CAS WSGI app over ``store``; caller identity comes from ``cloister.caller_*`` keys."""
    ctx = build_context(store, audit, engine, identity, limits=limits)
    return CASApp(ctx, route_table(extra_routes))


__all__ = [
    "AppContext",
    "AuditLog",
    "Auth",
    "CASApp",
    "CASIdentity",
    "CASServer",
    "Caller",
    "Keyring",
    "Limits",
    "Request",
    "Response",
    "Route",
    "SealOptions",
    "SealedStore",
    "SecretEngine",
    "ServerConfig",
    "SessionRecord",
    "SqliteStore",
    "Store",
    "StoredVersion",
    "check_state",
    "create_app",
    "init_state",
    "key_hash",
    "key_hash_of_pem",
    "migrate_state",
    "open_store",
    "rotate_key",
    "sealed_sqlite",
]
