"""Errors cheroot answers itself (before the app runs) as the CAS's JSON error shape.

cheroot rejects malformed requests — a ``#fragment`` or bad escape in the
request line, an unknown HTTP version, plain HTTP on the TLS port, an
overloaded queue — with a ``text/plain`` body.  Every CAS error is
``{"error": {"code", "message", "details"}}``; :class:`JSONErrorConnection`
makes these answers follow it too.  The message is cheroot's own fixed text.
"""

from __future__ import annotations

import json
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot import server

_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "timeout",
    411: "length_required", 413: "payload_too_large", 414: "uri_too_long",
    500: "internal", 501: "not_implemented", 503: "unavailable",
    505: "http_version_not_supported",
}


class JSONErrorRequest(server.HTTPRequest):
    """cheroot's request, answering its own errors (status >= 400) in JSON."""

    def read_request_line(self) -> bool:
        # cheroot catches only UnicodeError from urlsplit; "//[" raises ValueError
        # ("Invalid IPv6 URL"), which became a 500 and a traceback in the log
        try:
            return bool(super().read_request_line())  # type: ignore[no-untyped-call]
        except ValueError:
            self.simple_response("400 Bad Request", "Malformed Request-URI")
            return False

    def simple_response(self, status: Any, msg: Any = "") -> None:
        status = str(status)
        number = int(status[:3])
        if number < 400:
            super().simple_response(status, msg)
            return
        text = msg.decode("iso-8859-1") if isinstance(msg, bytes) else str(msg)
        reason = status[4:] or "error"
        body = json.dumps({"error": {
            "code": _CODES.get(number, "http_error"),
            "message": text or reason,
            "details": [] if not text else [reason],
        }}, separators=(",", ":")).encode() + b"\n"
        head = [f"{self.server.protocol} {status}", f"Content-Length: {len(body)}",
                "Content-Type: application/json", "Cache-Control: no-store"]
        if number in (413, 414) or number >= 500:
            self.close_connection = True
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("iso-8859-1") + body
        try:
            self.conn.wfile.write(data)
        except OSError as exc:
            if exc.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise


class JSONErrorConnection(server.HTTPConnection):
    RequestHandlerClass = JSONErrorRequest


__all__ = ["JSONErrorConnection", "JSONErrorRequest"]
