"""THE route table of the CAS: every endpoint, its handler and required authentication.

A route is ``Route(method, pattern, handler, auth)``.  ``pattern`` is a path
with ``{param}`` placeholders (each matches one or more characters other
than ``,``, so namespaced names like ``ns/app`` fit); the matched values are
in ``request.params``.  ``auth`` is :attr:`Auth.PUBLIC` (anonymous callers
allowed) or :attr:`Auth.CLIENT_CERT` (the dispatcher answers 401 before the
handler runs when the connection carried no client certificate).

Handlers are thin: ``handler(ctx, request) -> Response``; they parse, call
the library (:class:`cloister.cas._sessions.SessionService` …) and shape the
JSON.  Errors are raised as :class:`cloister.errors.Error` and turned into
JSON by :mod:`cloister.cas._errors_http`.

**Adding routes** (e.g. the attestation endpoints ``/v1/attest/...``): add
``Route`` entries to :data:`ATTESTATION_ROUTES` below (or pass
``extra_routes=`` to :func:`cloister.cas.create_app`).  Per-feature state
(nonce caches …) belongs in ``ctx.extensions``; attestation decisions are
counted with ``ctx.metrics.count_attestation(result)`` and audited with
``ctx.audit.record(...)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from cloister.cas import _attestation as attestation
from cloister.cas import _handlers as h
from cloister.cas import _platforms as platforms
from cloister.cas import _service_gates as service_gates
from cloister.cas._http import Request, Response

if TYPE_CHECKING:
    from cloister.cas._app import AppContext

Handler = Callable[["AppContext", Request], Response]

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class Auth(Enum):
    PUBLIC = "public"
    CLIENT_CERT = "client-cert"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    auth: Auth
    #: the per-client rate limit this route counts against (``nonce``, ``attest``; see
    #: :class:`cloister.cas.Limits`), or None
    rate: str | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts, pos = [], 0
        for m in _PLACEHOLDER.finditer(self.pattern):
            parts.append(re.escape(self.pattern[pos : m.start()]))
            parts.append(f"(?P<{m.group(1)}>[^,]+)")
            pos = m.end()
        parts.append(re.escape(self.pattern[pos:]))
        object.__setattr__(self, "regex", re.compile("".join(parts)))

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(path)
        return m.groupdict() if m else None


PUBLIC, CERT = Auth.PUBLIC, Auth.CLIENT_CERT

SESSION_ROUTES: tuple[Route, ...] = (
    Route("POST", "/session", h.post_session, CERT),
    Route("POST", "/v1/sessions", h.post_session, CERT),
    Route("GET", "/v1/sessions", h.list_sessions, CERT),
    Route("GET", "/v1/sessions/{name}", h.get_session, CERT),
    Route("GET", "/v1/values/session={name},secret={secret}", h.get_value, PUBLIC),
    Route("GET", "/v1/values/session={name}", h.get_values, PUBLIC),
)

OPERATION_ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", h.healthz, PUBLIC),
    Route("GET", "/metrics", h.metrics, PUBLIC),
    Route("GET", "/v1/certificate", h.cas_certificate, PUBLIC),
)

#: enrolling the quoting keys whose evidence counts for the caller's sessions
PLATFORM_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/platforms", platforms.post_platform, CERT),
    Route("GET", "/v1/platforms", platforms.get_platforms, CERT),
    Route("DELETE", "/v1/platforms/{platform_id}", platforms.delete_platform, CERT),
)

#: the attestation endpoints: the evidence is the credential, so no client certificate
ATTESTATION_ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/attest/nonce", attestation.post_nonce, PUBLIC, rate="nonce"),
    Route("POST", "/v1/attest/config", attestation.post_config, PUBLIC, rate="attest"),
    Route("POST", "/v1/attest/lease", service_gates.post_lease, PUBLIC, rate="attest"),
)


def route_table(extra: Sequence[Route] = ()) -> tuple[Route, ...]:
    """All routes, checked for duplicates (same method and pattern)."""
    table = (*SESSION_ROUTES, *OPERATION_ROUTES, *PLATFORM_ROUTES, *ATTESTATION_ROUTES, *extra)
    seen: set[tuple[str, str]] = set()
    for route in table:
        key = (route.method, route.pattern)
        if key in seen:
            raise ValueError(f"duplicate route {route.method} {route.pattern}")
        seen.add(key)
    return table
