"""Client of a LAS (:mod:`._las`): ask for a quote, read the platform id."""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
from typing import Any

from cloister import errors
from cloister._address import parse_host_port


class LasUnreachable(errors.Unreachable):
    """The LAS could not be reached at all (worth retrying; any other failure is not).

    A transport failure, not an attestation refusal: nothing was decided."""


#: the LAS's port (SCONE's too); defined here so clients need not import the server
DEFAULT_PORT = 18766

_TIMEOUT = 10.0


def default_las_address() -> str:
    """``$CLOISTER_LAS_ADDR``, then ``$SCONE_LAS_ADDR``, then ``127.0.0.1:18766``."""
    return (os.environ.get("CLOISTER_LAS_ADDR") or os.environ.get("SCONE_LAS_ADDR")
            or f"127.0.0.1:{DEFAULT_PORT}")


class LasClient:
    """Talks to the LAS at ``addr`` (plain HTTP: the LAS is node-local)."""

    def __init__(self, addr: str | None = None, *, timeout: float = _TIMEOUT) -> None:
        self.addr = addr or default_las_address()
        where = parse_host_port(self.addr, default_port=DEFAULT_PORT, what="LAS address",
                                example="CLOISTER_LAS_ADDR=127.0.0.1:18766")
        self.host, self.port = where.host, where.port
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {} if data is None else {"Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            raise LasUnreachable(
                f"LAS at {self.addr} is unreachable: {exc}",
                details=["start it with `cloister las serve`, or set CLOISTER_LAS_ADDR"],
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
            raise errors.EvidenceError(
                f"LAS at {self.addr} refused: {error.get('message', f'HTTP {response.status}')}",
                details=[str(d) for d in error.get("details", [])],
            )
        return answer

    def quote(self, measurement: str, fspf_tag: str | None, report_data: bytes) -> bytes:
        """Evidence bytes over the claims (``report_data`` is the 32 raw bytes)."""
        answer = self._call("POST", "/v1/quote", {
            "measurement": measurement, "fspf_tag": fspf_tag,
            "report_data": report_data.hex(),
        })
        try:
            return base64.b64decode(answer["evidence"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise errors.EvidenceError(f"LAS at {self.addr} answered without evidence") from None

    def platform(self) -> dict[str, str]:
        """``{"platform_id", "public_key" (PEM), "evidence_type"}`` of the LAS."""
        answer = self._call("GET", "/v1/platform")
        return {str(k): str(v) for k, v in answer.items()}
