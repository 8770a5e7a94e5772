"""Thin HTTP handlers: parse the request, call the library, shape the JSON.

Each handler is ``(ctx, request) -> Response`` and is listed in
:mod:`cloister.cas._routes`.  No access decisions are made here beyond what
the route table's ``auth`` already did; the session service decides.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cloister import errors
from cloister.cas._http import Request, Response

if TYPE_CHECKING:
    from cloister.cas._app import AppContext

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def post_session(ctx: AppContext, req: Request) -> Response:
    caller = req.require_caller()
    if not req.body.strip():
        raise errors.RequestError(
            "the request body is empty", details=["send the session YAML as the request body"]
        )
    written = ctx.sessions.write(req.text(), caller)
    status = 201 if written.created else 200
    return Response.json(status, {"name": written.record.name, "hash": written.record.hash})


def list_sessions(ctx: AppContext, req: Request) -> Response:
    """The names of the sessions the caller may read (``cloister session list``)."""
    return Response.json(200, {"sessions": ctx.sessions.readable(req.require_caller())})


def get_session(ctx: AppContext, req: Request) -> Response:
    caller = req.require_caller()
    session_hash = req.query.get("hash")
    if session_hash is not None and not _HEX64.fullmatch(session_hash):
        raise errors.RequestError(
            f"hash {session_hash!r} is not a session hash", details=["expected 64 hex digits"]
        )
    record = ctx.sessions.read(req.params["name"], caller, session_hash)
    return Response.json(
        200,
        {
            "name": record.name,
            "session": record.text,
            "hash": record.hash,
            "predecessor": record.predecessor,
            "creator": record.creator_cert_pem,
            "created_at": record.created_at,
        },
    )


def _audit_values(ctx: AppContext, req: Request, secret: str | None) -> None:
    ctx.audit.record(
        caller=req.caller.key_hash if req.caller else None, action="read-public-values",
        session=req.params["name"], decision="allow", reason="", secret=secret,
    )


def get_values(ctx: AppContext, req: Request) -> Response:
    values = ctx.sessions.public_values(req.params["name"])
    _audit_values(ctx, req, None)
    return Response.json(200, {"values": values})


def get_value(ctx: AppContext, req: Request) -> Response:
    secret = req.params["secret"]
    values = ctx.sessions.public_values(req.params["name"], secret)
    if secret not in values:
        raise errors.NotPublic(f"no public secret {secret!r} in that session")
    _audit_values(ctx, req, secret)
    return Response.json(200, {"name": secret, **values[secret]})


def healthz(ctx: AppContext, req: Request) -> Response:
    ctx.store.session_count()  # raises StoreError (503) when the store is unusable
    return Response.json(200, {"status": "ok"})


def metrics(ctx: AppContext, req: Request) -> Response:
    return Response.text(200, ctx.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")


def cas_certificate(ctx: AppContext, req: Request) -> Response:
    """The CAS CA certificate clients pin (trust on first use, or compare out of band)."""
    if ctx.identity is None:
        raise errors.NotFound("this CAS has no certificate configured")
    return Response.json(200, {"certificate": ctx.identity.ca_cert_pem})
