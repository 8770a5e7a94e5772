"""The CAS: configuration and attestation service (server side).

Public API:

- :class:`CASServer` / :class:`ServerConfig` — ``cloister cas serve``: state
  directory, CAS identity, store, HTTPS (cheroot + pyOpenSSL, self-signed
  client certificates welcome);
- :class:`Limits` — every protective limit, with its default;
- :func:`create_app` — the WSGI app alone, for embedding and tests;
- :class:`~cloister.cas.store.Store` (protocol) and :class:`SqliteStore`;
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
from cloister.cas._identity import CASIdentity, load_or_create_identity
from cloister.cas._limits import Limits
from cloister.cas._routes import Auth, Route, route_table
from cloister.cas._server import CASServer, ServerConfig, build_context, check_state, open_store
from cloister.cas._sqlite import SqliteStore
from cloister.cas.store import SessionRecord, Store


def create_app(
    store: Store,
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
    "Limits",
    "Request",
    "Response",
    "Route",
    "SecretEngine",
    "ServerConfig",
    "SessionRecord",
    "SqliteStore",
    "Store",
    "check_state",
    "create_app",
    "key_hash",
    "key_hash_of_pem",
    "load_or_create_identity",
    "open_store",
]
