"""The one place where errors become HTTP statuses and JSON error bodies.

Every error answer has the shape ``{"error": {"code", "message", "details"}}``.
A :class:`cloister.errors.Error` keeps its (secret-free) message; any other
exception is a bug: it is logged with its type and a request id (no message,
which might echo secret input) and answered 500 with a generic message.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from dataclasses import replace

from cloister import errors
from cloister._http_status import DEFAULT_STATUS, HTTP_STATUS, status_for
from cloister.cas._http import Response
from cloister.cas._ratelimit import retry_after
from cloister.errors import MethodNotAllowed

_log = logging.getLogger(__name__)

# the table lives in cloister._http_status, which clients read too (light, no server)
__all__ = ["DEFAULT_STATUS", "HTTP_STATUS", "MethodNotAllowed", "error_body", "error_response",
           "status_for"]


def error_body(code: str, message: str, details: list[str]) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: BaseException) -> Response:
    """Map ``exc`` to its JSON error response; unknown exceptions become a generic 500."""
    if isinstance(exc, errors.Error):
        response = Response.json(status_for(exc), error_body(exc.code, exc.message, exc.details))
        wait = getattr(exc, "retry_after", None)
        if wait is not None:
            response = replace(response, headers=(("Retry-After", str(retry_after(wait))),))
        return response
    incident = uuid.uuid4().hex[:12]
    # type only: the message of an unexpected exception may echo request data
    _log.error(
        "internal error %s: %s\n%s",
        incident,
        type(exc).__name__,
        # locations only: neither the message nor source lines (which may hold literals)
        "\n".join(
            f"  {fs.filename}:{fs.lineno} in {fs.name}"
            for fs in traceback.extract_tb(exc.__traceback__)
        ),
    )
    return Response.json(
        DEFAULT_STATUS,
        error_body(
            "internal_error",
            "the CAS failed to handle this request",
            [f"incident {incident} is in the CAS log"],
        ),
    )
