"""The CAS WSGI application: dispatch over the route table, auth, limits, JSON errors.

Per request, in order: decode the path (UTF-8, else 400); find the route
(404 / 405 JSON); count the request against its route's per-client rate
limit (429 + ``Retry-After``); refuse anonymous callers on client-cert
routes (401); read the body up to ``max_body`` bytes (413 JSON beyond — without reading
the rest, and the connection is closed); run the handler; map any exception
(inside a :func:`cloister.cas._keygen.request_scope`, so key generation stops
when the client hangs up); map any exception through
:mod:`cloister.cas._errors_http`; record metrics by route pattern.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from cloister import errors
from cloister.cas._audit import AuditLog
from cloister.cas._errors_http import MethodNotAllowed, error_response
from cloister.cas._http import (
    ENV_CERT_PEM,
    ENV_DISCONNECTED,
    ENV_KEY_HASH,
    Caller,
    Request,
    Response,
)
from cloister.cas._identity import CASIdentity
from cloister.cas._keygen import request_scope
from cloister.cas._metrics import Metrics
from cloister.cas._ratelimit import RateLimiter, client_key, retry_after
from cloister.cas._routes import Auth, Route
from cloister.cas._sealed_store import SealedStore
from cloister.cas._sessions import SessionService

_log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1024 * 1024

StartResponse = Callable[..., Any]

_STATUS_TEXT = {
    200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


@dataclass
class AppContext:
    """Everything handlers may use.  ``extensions`` holds per-feature state (e.g. nonces)."""

    store: SealedStore
    sessions: SessionService
    audit: AuditLog
    metrics: Metrics
    identity: CASIdentity | None = None
    max_body: int = DEFAULT_MAX_BODY
    extensions: dict[str, Any] = field(default_factory=dict)
    #: per-client rate limits by name (a route's ``rate``); a name not here is not limited
    rates: dict[str, RateLimiter] = field(default_factory=dict)

    def limit_rate(self, name: str | None, environ: dict[str, Any]) -> None:
        """:class:`errors.RateLimited` (429) if this client is over the ``name`` limit."""
        limiter = self.rates.get(name) if name else None
        if limiter is None:
            return
        wait = limiter.take(client_key(str(environ.get("REMOTE_ADDR", ""))))
        if wait > 0:
            raise errors.RateLimited(
                f"too many {name} requests from your address: at most {limiter.rate:g} per "
                f"second (limit {name}_rate); retry after {retry_after(wait)} s",
                retry_after=wait,
            )


def _connected() -> bool:
    return False


def _caller(environ: dict[str, Any]) -> Caller | None:
    key_hash, pem = environ.get(ENV_KEY_HASH), environ.get(ENV_CERT_PEM)
    if isinstance(key_hash, str) and isinstance(pem, str):
        return Caller(key_hash=key_hash, cert_pem=pem)
    return None


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    too_large = errors.PayloadTooLarge(
        f"request body is larger than the limit of {limit} bytes",
        details=["send a smaller session, or start the CAS with a larger --max-body"],
    )
    raw_length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if raw_length:
        try:
            length = int(raw_length)
        except ValueError:
            raise errors.RequestError("Content-Length is not a number") from None
        if length > limit:
            raise too_large
        if length <= 0:
            return b""
    elif not chunked:
        return b""
    else:
        length = limit + 1
    stream = environ["wsgi.input"]
    try:
        body: bytes = stream.read(length)
    except TimeoutError:
        raise errors.RequestError(
            "the request body did not arrive in time (limit body_deadline)"
        ) from None
    except (OSError, ValueError):
        raise errors.RequestError("the request body could not be read") from None
    if len(body) > limit:
        raise too_large
    return body


#: bytes of an oversized body read and dropped before answering 413, so that a
#: client still sending can read the answer instead of hitting a reset ("lingering close")
DRAIN_LIMIT = 8 * 1024 * 1024


def _drain(environ: dict[str, Any]) -> None:
    stream = environ.get("wsgi.input")
    left = DRAIN_LIMIT
    try:
        while stream is not None and left > 0:
            chunk = stream.read(min(65536, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):
        return


class CASApp:
    """WSGI callable.  Build it with :func:`cloister.cas.create_app`."""

    def __init__(
        self, ctx: AppContext, routes: Sequence[Route], *, fallback: Route | None = None
    ) -> None:
        self.ctx = ctx
        self.routes = tuple(routes)
        #: answers every request no route matches (a sealed CAS: 503 ``sealed``)
        self.fallback = fallback

    def _resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed on {path}", details=[f"allowed: {', '.join(allowed)}"]
            )
        raise errors.NotFound(
            f"no such endpoint: {path}", details=["see the CAS API documentation"]
        )

    def handle(self, environ: dict[str, Any]) -> tuple[str, Response]:
        """Run one request; returns the route label (for metrics) and the response."""
        label = "unmatched"
        try:
            method = str(environ.get("REQUEST_METHOD", "GET")).upper()
            try:
                path = str(environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8")
            except UnicodeError:
                raise errors.RequestError("the request path is not valid UTF-8") from None
            try:
                route, params = self._resolve(method, path)
            except (errors.NotFound, MethodNotAllowed):
                if self.fallback is None:
                    raise
                route, params = self.fallback, {}
            label = route.pattern
            self.ctx.limit_rate(route.rate, environ)
            caller = _caller(environ)
            if route.auth is Auth.CLIENT_CERT and caller is None:
                raise errors.AuthenticationError(
                    f"{method} {route.pattern} needs a client certificate",
                    details=["connect with a client certificate (curl --cert FILE --key FILE)"],
                )
            try:
                body = _read_body(environ, self.ctx.max_body)
            except errors.PayloadTooLarge:
                _drain(environ)
                raise
            query = dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
            headers = {
                k[5:].replace("_", "-").lower(): str(v)
                for k, v in environ.items()
                if k.startswith("HTTP_")
            }
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = str(environ["CONTENT_TYPE"])
            request = Request(method, path, query, headers, body, caller, params)
            with request_scope(environ.get(ENV_DISCONNECTED) or _connected):
                return label, route.handler(self.ctx, request)
        except Exception as exc:
            return label, error_response(exc)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        label, response = self.handle(environ)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *response.headers,
        ]
        if response.status == 413:
            headers.append(("Connection", "close"))
        reason = _STATUS_TEXT.get(response.status, "Error")
        start_response(f"{response.status} {reason}", headers)
        self.ctx.metrics.observe_request(
            label, str(environ.get("REQUEST_METHOD", "")), response.status,
            time.perf_counter() - started,
        )
        return [response.body]
