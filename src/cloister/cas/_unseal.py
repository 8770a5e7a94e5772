"""The CAS while sealed (``shamir`` seal): status, unseal, and 503 ``sealed`` for the rest.

A sealed CAS knows no key: it serves with its sealed-mode certificate
(:mod:`cloister._sealmark`) and answers

- ``GET /healthz``: 503 ``{"status": "sealed", "sealed": true, "progress", "threshold",
  "seal", "seal_id"}`` (a readiness probe sees "not ready");
- ``POST /v1/sys/unseal`` ``{"share": "cloister-share-1:…"}`` (or ``{"reset": true}``):
  200 ``{"sealed", "progress", "threshold"}``; a malformed, mistyped, repeated
  or foreign share is a 400 ``bad_share`` naming which; the K-th share unseals
  (or, when the K do not combine to the master key, discards the attempt);
- everything else: 503 ``{"error": {"code": "sealed", …}}``.

Once unsealed the full CAS app takes over; its ``POST /v1/sys/unseal``
answers ``{"sealed": false}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloister import errors
from cloister.cas._http import Request, Response
from cloister.cas._routes import Auth, Route
from cloister.cas._seal import ShamirUnsealer

if TYPE_CHECKING:
    from cloister.cas._app import AppContext

UNSEAL_PATH = "/v1/sys/unseal"
_UNSEALER, _ON_UNSEAL = "unsealer", "on_unseal"


def _status(unsealer: ShamirUnsealer) -> dict[str, Any]:
    return {"sealed": True, "progress": unsealer.progress, "threshold": unsealer.threshold,
            "seal": "shamir", "seal_id": unsealer.config.seal_id}


def healthz_sealed(ctx: AppContext, req: Request) -> Response:
    return Response.json(503, {"status": "sealed", **_status(ctx.extensions[_UNSEALER])})


def post_unseal(ctx: AppContext, req: Request) -> Response:
    unsealer: ShamirUnsealer = ctx.extensions[_UNSEALER]
    try:
        body = json.loads(req.body or b"{}")
    except ValueError:
        raise errors.RequestError("the unseal request is not JSON",
                                  details=['send {"share": "cloister-share-1:…"}']) from None
    if not isinstance(body, dict):
        raise errors.RequestError('send {"share": "…"} or {"reset": true}')
    if body.get("reset") is True:
        unsealer.reset()
        return Response.json(200, _status(unsealer))
    share = body.get("share")
    if not isinstance(share, str):
        raise errors.RequestError('the unseal request has no "share" string')
    key = unsealer.add(share)
    if key is None:
        return Response.json(200, _status(unsealer))
    on_unseal: Callable[[bytes], None] = ctx.extensions[_ON_UNSEAL]
    on_unseal(key)
    return Response.json(200, {"sealed": False, "progress": 0,
                               "threshold": unsealer.threshold})


def sealed(ctx: AppContext, req: Request) -> Response:
    unsealer: ShamirUnsealer = ctx.extensions[_UNSEALER]
    raise errors.Sealed(
        "the CAS is sealed: it serves nothing until its master key is unsealed",
        details=[f"{unsealer.progress} of {unsealer.threshold} unseal shares given; "
                 "unseal it with: cloister cas unseal --cas ADDR"],
    )


def already_unsealed(ctx: AppContext, req: Request) -> Response:
    return Response.json(200, {"sealed": False, "progress": 0})


SEALED_ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz_sealed, Auth.PUBLIC),
    Route("POST", UNSEAL_PATH, post_unseal, Auth.PUBLIC),
)
#: added to the unsealed CAS's table
UNSEALED_ROUTES: tuple[Route, ...] = (Route("POST", UNSEAL_PATH, already_unsealed, Auth.PUBLIC),)


def sealed_extensions(unsealer: ShamirUnsealer,
                      on_unseal: Callable[[bytes], None]) -> dict[str, Any]:
    return {_UNSEALER: unsealer, _ON_UNSEAL: on_unseal}
