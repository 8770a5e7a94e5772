"""Client of a LAS (:mod:`._las`): ask for a quote of this process, read the platform id.

A LAS address is a Unix socket path (``/run/cloister/las.sock``, the default;
``unix:PATH`` too) or ``HOST[:PORT]`` for a LAS on loopback TCP.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import socket
from typing import Any

from cloister import errors
from cloister._address import parse_host_port

#: the LAS's code for a caller whose ``/proc`` it may not read (``CallerNotMeasurable``)
CALLER_NOT_MEASURABLE = "caller_not_measurable"


class LasUnreachable(errors.Unreachable):
    """The LAS could not be reached at all (worth retrying; any other failure is not).

    A transport failure, not an attestation refusal: nothing was decided."""


class LasRefused(errors.EvidenceError):
    """The LAS answered with an error; ``las_code`` is its machine-readable code."""

    def __init__(self, message: str, *, details: list[str], las_code: str) -> None:
        super().__init__(message, details=details)
        self.las_code = las_code


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


#: the LAS's port (SCONE's too) when it serves loopback TCP; defined here so clients
#: need not import the server
DEFAULT_PORT = 18766
#: where the LAS serves by default (its directory: /run/cloister, 0755)
DEFAULT_SOCKET = "/run/cloister/las.sock"

_TIMEOUT = 10.0


def default_las_address() -> str:
    """``$CLOISTER_LAS_ADDR``, then ``$SCONE_LAS_ADDR``, then ``/run/cloister/las.sock``."""
    return (os.environ.get("CLOISTER_LAS_ADDR") or os.environ.get("SCONE_LAS_ADDR")
            or DEFAULT_SOCKET)


def socket_path(addr: str) -> str | None:
    """The Unix socket path ``addr`` names, or None for a TCP address."""
    if addr.startswith("unix:"):
        return addr[5:]
    return addr if addr.startswith("/") else None


class LasClient:
    """Talks to the LAS at ``addr`` (plain HTTP: the LAS is node-local)."""

    def __init__(self, addr: str | None = None, *, timeout: float = _TIMEOUT) -> None:
        self.addr = addr or default_las_address()
        self.path = socket_path(self.addr)
        if self.path is not None:
            self.host, self.port = "localhost", 0
        else:
            where = parse_host_port(self.addr, default_port=DEFAULT_PORT, what="LAS address",
                                    example="CLOISTER_LAS_ADDR=/run/cloister/las.sock")
            self.host, self.port = where.host, where.port
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.path is not None:
            return _UnixConnection(self.path, self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = self._connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {} if data is None else {"Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise LasUnreachable(
                f"LAS at {self.addr} is unreachable: {exc}",
                details=["start it with `cloister las serve`, or set CLOISTER_LAS_ADDR "
                         "(a socket path, or HOST:PORT)"],
            ) from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise errors.EvidenceError(f"LAS at {self.addr} sent a non-JSON answer "
                                       f"(HTTP {response.status}): is it a cloister LAS?")
        if response.status != 200:
            error = answer.get("error") or {}
            raise LasRefused(
                f"LAS at {self.addr} refused: {error.get('message', f'HTTP {response.status}')}",
                details=[str(d) for d in error.get("details", [])],
                las_code=str(error.get("code", "error")),
            )
        return answer

    def quote(self, report_data: bytes, *, runtime: str | None = None,
              program: str | None = None, fspf_path: str | None = None) -> dict[str, Any]:
        """The LAS's quote of *this* process: ``{"evidence": bytes, "measurement", "uid",
        "gid", …}``.  ``report_data`` is the 32 raw bytes; the paths tell the LAS where
        this process's runtime, the native program it will exec and its protection file
        are — the LAS measures them itself."""
        answer = self._call("POST", "/v1/quote", {
            "report_data": report_data.hex(), "runtime": runtime, "program": program,
            "fspf_path": fspf_path,
        })
        try:
            answer["evidence"] = base64.b64decode(answer["evidence"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise errors.EvidenceError(f"LAS at {self.addr} answered without evidence") from None
        return answer

    def platform(self) -> dict[str, str]:
        """``{"platform_id", "public_key" (PEM), "evidence_type"}`` of the LAS."""
        answer = self._call("GET", "/v1/platform")
        return {str(k): str(v) for k, v in answer.items()}
